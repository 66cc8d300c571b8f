"""Confidence-based early exit against the plain pipeline's own patch softmaxes, on real photos."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from anchor_edge import InputError, Pipeline
from anchor_edge.method.lsp import PRESETS


def with_threshold(plain: Pipeline, threshold: float | None) -> Pipeline:
    """The same models and settings as `plain`, with early exit at `threshold`."""
    return Pipeline(
        plain.bundle, plain.anchornet, plain.downstream, lsp=plain.lsp, vote_min=plain.vote_min, early_exit=threshold
    )


def running_confidences(patch_probs: np.ndarray) -> np.ndarray:
    """Confidence after 1, 2, ... patches: the top class of the mean of the first n softmaxes."""
    counts = np.arange(1, len(patch_probs) + 1)[:, None]
    return (np.cumsum(patch_probs.astype(np.float64), axis=0) / counts).max(axis=1)


def test_threshold_zero_classifies_only_the_first_patch(plain, images, plain_predictions):
    for got, full in zip(with_threshold(plain, 0).predict_batch(images), plain_predictions):
        assert len(got.boxes) == len(got.boxes_original) == len(got.patch_probs) == 1
        assert got.boxes.tolist() == full.boxes[:1].tolist()
        assert got.classified_sizes == (int(full.boxes[0, 2] - full.boxes[0, 0]),), "the first round is one patch"
        np.testing.assert_allclose(got.boxes_original, full.boxes_original[:1])
        np.testing.assert_allclose(got.patch_probs, full.patch_probs[:1], atol=1e-5)
        assert got.class_id == int(full.patch_probs[0].argmax())
        assert got.score == pytest.approx(float(full.patch_probs[0].max()), abs=1e-5)
        assert (got.branch, got.anchor_class) == (full.branch, full.anchor_class)


def test_the_fast_preset_takes_what_threshold_zero_takes(plain, images, plain_predictions):
    # LSP takes the hottest location first under any preset, so K = 1 is early exit at 0 without the rounds.
    fast = Pipeline(plain.bundle, plain.anchornet, plain.downstream, lsp=PRESETS["fast"], vote_min=plain.vote_min)
    for got, full in zip(fast.predict_batch(images), plain_predictions):
        assert got.boxes.tolist() == full.boxes[:1].tolist()
        np.testing.assert_allclose(got.patch_probs, full.patch_probs[:1], atol=1e-5)
        assert got.class_id == int(full.patch_probs[0].argmax())


def test_threshold_above_one_equals_the_plain_pipeline(plain, images, plain_predictions):
    assert any(len(p.boxes) > 1 for p in plain_predictions), "every photo had one patch: the test proves nothing"
    for got, full in zip(with_threshold(plain, 1.01).predict_batch(images), plain_predictions):
        assert got.boxes.tolist() == full.boxes.tolist()
        assert got.classified_sizes == full.classified_sizes == tuple(int(b[2] - b[0]) for b in full.boxes)
        np.testing.assert_allclose(got.boxes_original, full.boxes_original)
        np.testing.assert_allclose(got.patch_probs, full.patch_probs, atol=1e-5)
        assert (got.class_id, got.label, got.branch) == (full.class_id, full.label, full.branch)
        assert got.score == pytest.approx(full.score, abs=1e-5)


def test_stops_at_the_first_patch_whose_running_mean_reaches_the_threshold(plain, images, plain_predictions):
    curves = [running_confidences(p.patch_probs) for p in plain_predictions]
    values = np.unique(np.concatenate(curves))
    stops_inside_a_round = []
    for quantile in (0.2, 0.4, 0.6, 0.8):
        # Halfway between two neighbouring confidences, so float noise between batch
        # compositions cannot move any image across the threshold.
        upper = int(quantile * len(values))
        threshold = float(values[upper - 1] + values[upper]) / 2
        expected = [int(np.argmax(c >= threshold)) + 1 if (c >= threshold).any() else len(c) for c in curves]
        early = with_threshold(plain, threshold)
        given: list[list[int]] = [[] for _ in images]  # the sizes of the boxes each image sent to the downstream
        classify = early.classify_normalized

        def recording(inputs, boxes, clock=None, given=given, classify=classify):
            for image, image_boxes in enumerate(boxes):
                given[image] += [int(b[2] - b[0]) for b in image_boxes]
            return classify(inputs, boxes, clock)

        early.classify_normalized = recording
        got = early.predict_batch(images)
        assert [len(p.boxes) for p in got] == expected, threshold
        for prediction, full, n, sent in zip(got, plain_predictions, expected, given):
            assert prediction.boxes.tolist() == full.boxes[:n].tolist()
            assert prediction.class_id == int(full.patch_probs[:n].sum(axis=0).argmax())
            assert prediction.classified_sizes == tuple(sent), "every patch the rounds ran, dropped ones included"
        stops_inside_a_round += [n for n, c in zip(expected, curves) if n not in (1, 2, 4, 8, 16, len(c))]
    assert stops_inside_a_round, "no photo stopped inside a round: dropping the patches past the stop went untested"


def test_a_downstream_with_its_own_normalization_gets_the_same_patches(plain, images):
    """EfficientNet-Lite0 (mean 127, std 128) beside an ImageNet AnchorNet: inputs are normalized once per model."""
    downstream = dataclasses.replace(plain.bundle.downstream, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))
    models = dataclasses.replace(plain.bundle.manifest.models, downstream=downstream)
    bundle = dataclasses.replace(plain.bundle, manifest=dataclasses.replace(plain.bundle.manifest, models=models))

    def pipeline(threshold: float | None) -> Pipeline:
        return Pipeline(
            bundle, plain.anchornet, plain.downstream, lsp=plain.lsp, vote_min=plain.vote_min, early_exit=threshold
        )

    for got, full in zip(pipeline(1.01).predict_batch(images), pipeline(None).predict_batch(images)):
        assert got.boxes.tolist() == full.boxes.tolist()
        np.testing.assert_allclose(got.patch_probs, full.patch_probs, atol=1e-5)


def test_a_batch_gives_what_single_images_give(plain, images):
    pipeline = with_threshold(plain, 0.3)
    batch = pipeline.predict_batch(images[:4])
    for image, together in zip(images[:4], batch):
        alone = pipeline(image)
        assert alone.boxes.tolist() == together.boxes.tolist()
        assert alone.class_id == together.class_id


def test_rounds_double_and_make_one_downstream_call_per_patch_size(plain, images, plain_predictions):
    calls: list[tuple[int, ...]] = []

    class CountingRunner:
        backend = plain.downstream.backend
        last_timings: dict[str, float] = {}

        def run(self, feeds, names=None):
            calls.append(feeds["image"].shape)
            return plain.downstream.run(feeds, names)

    pipeline = Pipeline(
        plain.bundle, plain.anchornet, CountingRunner(), lsp=plain.lsp, vote_min=plain.vote_min, early_exit=1.01
    )
    pipeline.predict_batch(images)
    counts = [len(p.boxes) for p in plain_predictions]
    sizes = [p.branch for p in plain_predictions]
    # Nobody stops early at 1.01: round [a, b) takes patches a..b-1 of every image that has them.
    rounds = [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32)]
    expected = sorted(
        (sum(min(n, b) - a for n, k in zip(counts, sizes) if n > a and k == size), 3, size, size)
        for a, b in rounds
        for size in {k for n, k in zip(counts, sizes) if n > a}
    )
    assert max(counts) <= 32
    assert sorted(calls) == expected


@pytest.mark.parametrize("threshold", [-0.1, math.nan, math.inf, "0.5", True])
def test_refuses_a_threshold_that_is_not_a_number_at_least_zero(plain, threshold):
    with pytest.raises(InputError, match="early_exit"):
        with_threshold(plain, threshold)


def test_from_bundle_passes_the_threshold(small_bundle, images):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, early_exit=0) as pipeline:
        assert pipeline.early_exit == 0
        assert all(len(p.patch_probs) == 1 for p in pipeline.predict_batch(images[:2]))


def test_classified_sizes_are_those_of_every_round_an_image_took_part_in():
    from anchor_edge.method.early_exit import classified_sizes

    boxes = np.array([[0, 0, s, s] for s in (63, 63, 95, 95, 95, 111)])  # sizes of mixed branches, in LSP order
    assert classified_sizes(boxes, 0) == ()
    assert classified_sizes(boxes, 1) == (63,)
    assert classified_sizes(boxes, 2) == (63, 63)
    assert classified_sizes(boxes, 3) == (63, 63, 95, 95), "the round [2, 4) ran patch 4 too"
    assert classified_sizes(boxes, 5) == (63, 63, 95, 95, 95, 111), "the round [4, 8) ran to the last patch"
    assert classified_sizes(boxes, 6) == (63, 63, 95, 95, 95, 111)
