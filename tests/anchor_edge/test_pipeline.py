"""The Pipeline on ONNX Runtime against the method written independently in PyTorch (tests/reference.py)."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from anchor_edge import BundleError, InputError, LSPParams, Pipeline
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.preprocess import resize_and_crop
from tests import reference


@pytest.fixture(scope="module")
def pipe(small_bundle):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipeline:
        yield pipeline


@pytest.mark.parametrize("preset", ["visual", "accurate"])
def test_matches_pytorch_reference_on_real_photos(pipe, small_models, photos, preset):
    models, bundle = small_models[0], pipe.bundle
    a_norm, d_norm = (bundle.anchornet.mean, bundle.anchornet.std), (bundle.downstream.mean, bundle.downstream.std)
    pipeline = Pipeline(bundle, pipe.anchornet, pipe.downstream, lsp=PRESETS[preset], vote_min=2)
    predictions = pipeline.predict_batch([image for _, image in photos])
    unambiguous = 0
    for (name, image), got in zip(photos, predictions):
        crop, _ = resize_and_crop(image)
        probs, maps = reference.anchornet_outputs(models.anchornet, crop, a_norm)
        anchor_class, branch = reference.decide(probs, vote_min=2)
        k = (63, 95, 111)[branch]
        assert (got.anchor_class, got.branch) == (anchor_class, k), name
        np.testing.assert_allclose(got.branch_probs, probs, atol=1e-4, err_msg=name)
        heatmap = maps[branch][anchor_class]
        np.testing.assert_allclose(got.heatmap, heatmap, atol=1e-4, err_msg=name)
        params = PRESETS[preset][k]
        # LSP is exact on either heatmap; ONNX Runtime and PyTorch may order two
        # locations differently only where their values are closer than float32 noise.
        if reference.ordering_margin(heatmap, params.coverage) > 1e-5:
            unambiguous += 1
            assert got.boxes.tolist() == [list(b) for b in reference.lsp(heatmap, k, *params)], name
        assert got.boxes.tolist() == [list(b) for b in reference.lsp(got.heatmap, k, *params)], name
        patch_probs = reference.classify_patches(models.downstream, crop, got.boxes.tolist(), d_norm)
        np.testing.assert_allclose(got.patch_probs, patch_probs, atol=1e-4, err_msg=name)
        assert got.class_id == int(patch_probs.sum(axis=0).argmax()), name
    assert unambiguous >= len(photos) // 2, f"only {unambiguous} photos had an unambiguous heatmap order"


def _beside_reference(small_bundle, small_models, photos, **options):
    """The Pipeline's prediction on each photo (`options` passed to it), beside the reference's (class, branch)
    decision, its three (C, H, W) logit maps and the bundle's LSP presets."""
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, **options) as pipe:
        bundle = pipe.bundle
        predictions = pipe.predict_batch([image for _, image in photos])
    a_norm = (bundle.anchornet.mean, bundle.anchornet.std)
    for (name, image), got in zip(photos, predictions):
        crop, _ = resize_and_crop(image)
        probs, maps = reference.anchornet_outputs(small_models[0].anchornet, crop, a_norm)
        yield name, got, reference.decide(probs, vote_min=2), maps, PRESETS[bundle.preset]


def test_the_widest_rule_localizes_on_b111_as_the_reference_does(small_bundle, small_models, photos):
    beside = _beside_reference(small_bundle, small_models, photos, branch_rule="widest")
    for name, got, (anchor_class, _), maps, params in beside:
        assert (got.anchor_class, got.branch) == (anchor_class, 111), name
        np.testing.assert_allclose(got.heatmap, maps[2][anchor_class], atol=1e-4, err_msg=name)
        assert got.boxes.tolist() == [list(b) for b in reference.lsp(got.heatmap, 111, *params[111])], name


def test_the_max_heatmap_localizes_on_the_hottest_class_as_the_reference_does(small_bundle, small_models, photos):
    moved = 0
    for name, got, (anchor_class, branch), maps, params in _beside_reference(
        small_bundle, small_models, photos, heatmap="max"
    ):
        k = (63, 95, 111)[branch]
        assert (got.anchor_class, got.branch) == (anchor_class, k), name
        np.testing.assert_allclose(got.heatmap, maps[branch].max(axis=0), atol=1e-4, err_msg=name)
        assert got.boxes.tolist() == [list(b) for b in reference.lsp(got.heatmap, k, *params[k])], name
        moved += got.boxes.tolist() != [list(b) for b in reference.lsp(maps[branch][anchor_class], k, *params[k])]
    assert moved > 0, "the decided class's heatmap gave the same boxes on every photo: the test proves nothing"


@pytest.mark.parametrize(("weight", "rule"), [(0.5, "confident"), (1e6, "confident"), (0.5, "widest"), (1e6, "widest")])
def test_anchornets_vote_adds_its_voting_branch_as_the_reference_does(small_bundle, small_models, photos, weight, rule):
    models, changed, off_class = small_models[0], 0, 0
    options = dict(anchor_vote=weight, branch_rule=rule)
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, **options) as pipe:
        bundle, predictions = pipe.bundle, pipe.predict_batch([image for _, image in photos])
    a_norm, d_norm = (bundle.anchornet.mean, bundle.anchornet.std), (bundle.downstream.mean, bundle.downstream.std)
    assert bundle.preset == "accurate", "several patches an image: the mean and the sum differ"
    for (name, image), got in zip(photos, predictions):
        crop, _ = resize_and_crop(image)
        probs, _ = reference.anchornet_outputs(models.anchornet, crop, a_norm)
        anchor_class, branch = reference.decide(probs, vote_min=2)
        branch = 2 if rule == "widest" else branch  # the branch LSP read votes: B111 under the widest rule
        patches = reference.classify_patches(models.downstream, crop, got.boxes.tolist(), d_norm)
        vote = weight * np.array(probs[branch])
        scores = patches.mean(axis=0) + vote
        assert got.class_id == int(scores.argmax()), name
        np.testing.assert_allclose(got.anchor_scores, vote, rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(got.class_distribution(), scores / scores.sum(), atol=1e-5, err_msg=name)
        if weight > 1e3:  # the vote outweighs the patches: the voting branch's top class wins
            assert got.class_id == int(np.argmax(probs[branch])), name
        changed += got.class_id != int(patches.sum(axis=0).argmax())
        off_class += got.class_id != anchor_class
    if weight > 1e3 and rule == "confident":
        assert changed > 0, "the patches agreed with AnchorNet on every photo: the vote was never tested"
    if weight > 1e3:  # under the widest rule B111 votes, not the branch of the class the branches decided
        assert (off_class > 0) == (rule == "widest"), "B111's top class is not always the class the branches decided"


def test_anchor_vote_zero_is_the_papers_rule_and_a_bad_weight_is_refused(small_bundle, pipe, photos):
    assert pipe.anchor_vote == 0.0 and pipe(photos[0][1]).anchor_scores is None, "a bundle without the field"
    for bad in (-0.5, float("nan"), float("inf"), "1", True):
        with pytest.raises(InputError, match="anchor_vote must be"):
            Pipeline.from_bundle(small_bundle, backend="onnxruntime", anchor_vote=bad)


def test_a_checkpoint_recording_no_branch_rule_gives_the_papers_and_a_bad_rule_is_refused(small_bundle, pipe):
    assert (pipe.branch_rule, pipe.heatmap) == ("confident", "class")
    with pytest.raises(InputError, match="branch_rule must be one of confident, widest"):
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", branch_rule="largest")
    with pytest.raises(InputError, match="heatmap must be one of class, max"):
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", heatmap="logits")


def test_prediction_fields_are_consistent(pipe, photos):
    name, image = photos[1]
    prediction = pipe(image)
    assert prediction.branch in (63, 95, 111)
    assert prediction.label == pipe.bundle.class_names[prediction.class_id]
    sizes = {int(x1 - x0) for x0, _, x1, _ in prediction.boxes}
    assert sizes == {prediction.branch}
    assert prediction.patch_probs.shape == (len(prediction.boxes), 10)
    summed = prediction.patch_probs.sum(axis=0)
    assert prediction.score == pytest.approx(summed.max() / len(prediction.boxes), rel=1e-5)
    height, width = image.shape[:2]
    assert (prediction.boxes_original >= 0).all()
    assert (prediction.boxes_original[:, [0, 2]] <= width).all() and (
        prediction.boxes_original[:, [1, 3]] <= height
    ).all()
    assert prediction.heatmap.shape == {63: (21, 21), 95: (17, 17), 111: (15, 15)}[prediction.branch]
    assert {"preprocess", "anchornet", "decision", "lsp", "crop", "aggregate", "total"} <= set(prediction.timings)
    assert f"downstream_{prediction.branch}" in prediction.timings
    json.dumps(prediction.to_dict())


def test_boxes_original_map_back_onto_the_image(pipe, photos):
    # coffee is 600x400: short side 400, scale 400/256 = 1.5625; crop edge 16 -> 25, x offset 100 + 25.
    name, image = photos[1]
    assert name == "coffee" and image.shape[:2] == (400, 600)
    prediction = pipe(image)
    expected = prediction.boxes * 1.5625 + [125, 25, 125, 25]
    np.testing.assert_allclose(prediction.boxes_original, expected)


def test_batch_equals_single_images(pipe, photos):
    images = [image for _, image in photos[:4]]
    batch = pipe.predict_batch(images)
    for image, together in zip(images, batch):
        alone = pipe(image)
        assert alone.boxes.tolist() == together.boxes.tolist()
        np.testing.assert_allclose(alone.patch_probs, together.patch_probs, atol=1e-6)


def test_max_batch_chunks_give_the_same_result(small_bundle, pipe, photos):
    images = [image for _, image in photos]
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, max_batch=2) as small:
        chunked = small.predict_batch(images)
    for a, b in zip(chunked, pipe.predict_batch(images)):
        assert a.boxes.tolist() == b.boxes.tolist() and a.class_id == b.class_id
        np.testing.assert_allclose(a.patch_probs, b.patch_probs, atol=1e-6)


def test_four_threads_match_serial_results(pipe, photos):
    images = [image for _, image in photos] * 2
    serial = [pipe(image) for image in images]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(pipe, images))
    for a, b in zip(serial, parallel):
        assert (a.class_id, a.branch, a.boxes.tolist()) == (b.class_id, b.branch, b.boxes.tolist())
        np.testing.assert_array_equal(a.patch_probs, b.patch_probs)


def test_custom_lsp_parameters(small_bundle, photos):
    one_patch = {k: LSPParams(1, 0.5, 0.3) for k in (63, 95, 111)}
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", preset=one_patch) as pipe:
        assert all(len(p.boxes) == 1 for p in pipe.predict_batch([image for _, image in photos[:3]]))


def test_unknown_preset_and_backend_are_clear_errors(small_bundle):
    with pytest.raises(InputError, match="unknown LSP preset"):
        Pipeline.from_bundle(small_bundle, preset="quick")
    from anchor_edge import BackendError

    with pytest.raises(BackendError, match="unknown backend"):
        Pipeline.from_bundle(small_bundle, backend="cuda")
    with pytest.raises(BackendError, match="no TensorRT engines"):
        Pipeline.from_bundle(small_bundle, backend="tensorrt")


def test_empty_batch_gives_no_predictions(pipe):
    assert pipe.predict_batch([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.full((8, 8, 3), np.nan, np.float32),
        b"",
        b"\x00garbage" * 10,
        "/nonexistent.jpg",
    ],
    ids=["0x0", "nan-float", "empty-bytes", "random-bytes", "missing-path"],
)
def test_bad_images_raise_input_error_naming_the_position(pipe, photos, bad):
    with pytest.raises(InputError, match="image 1"):
        pipe.predict_batch([photos[0][1], bad])


def test_tiny_and_extreme_images_give_boxes_inside_their_central_square(pipe):
    # The network input is the central min(H, W) square resized to 256, then its central 224 (docs/method.md §8):
    # for a 1 x 1 image the square is the pixel, for a 10 x 10000 strip x in [4995, 5005), y in [0, 10); patches
    # lie in the square's central 224/256 and a k-pixel patch spans k * side / 256 image pixels.
    for image, (x0, y0, side) in (
        (np.full((1, 1, 3), 200, np.uint8), (0, 0, 1)),
        (np.random.default_rng(0).integers(0, 255, (10, 10000, 3), np.uint8), (4995, 0, 10)),
    ):
        prediction = pipe(image)
        assert prediction.branch in (63, 95, 111) and len(prediction.boxes_original) >= 1
        boxes = prediction.boxes_original
        low, high = 16 * side / 256, 240 * side / 256
        assert (boxes[:, [0, 2]] >= x0 + low - 1e-6).all() and (boxes[:, [0, 2]] <= x0 + high + 1e-6).all()
        assert (boxes[:, [1, 3]] >= y0 + low - 1e-6).all() and (boxes[:, [1, 3]] <= y0 + high + 1e-6).all()
        widths = boxes[:, 2] - boxes[:, 0]
        assert widths == pytest.approx((prediction.boxes[:, 2] - prediction.boxes[:, 0]) * side / 256)


def test_tampered_model_is_a_bundle_error(small_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    with open(copy / "downstream.onnx", "r+b") as model:
        model.seek(200)
        model.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="downstream.onnx does not match its sha256"):
        Pipeline.from_bundle(copy)


def test_runtime_runs_with_torch_unimportable(small_bundle, photos, tmp_path):
    image_path = tmp_path / "chelsea.png"
    import cv2

    cv2.imwrite(str(image_path), photos[2][1])
    script = textwrap.dedent(
        f"""
        import sys
        for blocked in ("torch", "torchvision", "skimage", "sklearn"):
            sys.modules[blocked] = None  # any import of these now raises ImportError
        from anchor_edge import Pipeline
        prediction = Pipeline.from_bundle({str(small_bundle)!r}, backend="auto")({str(image_path)!r})
        print(prediction.branch, len(prediction.boxes))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    branch, count = result.stdout.split()
    assert int(branch) in (63, 95, 111) and int(count) >= 1
