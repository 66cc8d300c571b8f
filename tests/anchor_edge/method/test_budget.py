"""The cost budget: patches in LSP order while their multiply-adds fit the cap, never one past it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anchor_edge import InputError, Pipeline
from anchor_edge.method.budget import check_budget, patch_costs, savings_note, within_budget
from anchor_edge.method.lsp import PRESETS


def boxes_of(*sizes: int) -> np.ndarray:
    return np.array([[8 * i, 0, 8 * i + size, size] for i, size in enumerate(sizes)])


def test_within_budget_keeps_the_longest_prefix_that_fits_by_hand():
    costs = {63: 30, 95: 70, 111: 100}
    # cap 100: 30 + 30 + 30 = 90 fits, a fourth 63 (120) does not; 70 + 70 = 140 does not; 100 fits exactly.
    kept = within_budget([boxes_of(63, 63, 63, 63), boxes_of(95, 95), boxes_of(111, 111), boxes_of(63)], costs, cap=100)
    assert [len(b) for b in kept] == [3, 1, 1, 1]
    assert kept[0].tolist() == boxes_of(63, 63, 63).tolist()  # the first ones, in LSP order
    # cap 29 affords only the first, which is kept in any case (check_budget lets every budget pay for one patch);
    # cap 1e9 affords everything
    assert [len(b) for b in within_budget([boxes_of(63, 63)], costs, cap=29)] == [1]
    assert [len(b) for b in within_budget([boxes_of(63, 63)], costs, cap=1e9)] == [2]


def test_the_least_budget_allowed_keeps_the_first_patch_through_rounding_and_the_message_names_an_allowed_one():
    budget = check_budget(1 / 49, {63: 1}, 49)  # exactly one patch's share; (1 / 49) * 49 is 0.9999999999999999
    assert budget * 49 < 1 and [len(b) for b in within_budget([boxes_of(63)], {63: 1}, cap=budget * 49)] == [1]
    costs, full = {63: 100, 111: 1_075_871_744}, 4_087_156_736  # the default bundle's 111 px patch: 0.26323...
    with pytest.raises(InputError, match=r"at least 0\.264 ") as refused:
        check_budget(0.26, costs, full)
    assert check_budget(float(str(refused.value).split("at least ")[1].split()[0]), costs, full) == 0.264


def test_a_budget_below_one_of_the_costliest_patch_is_refused_with_the_least_allowed():
    costs, full = {63: 30, 95: 70, 111: 100}, 400
    assert check_budget(0.25, costs, full) == 0.25  # 100 / 400: exactly one 111 patch
    with pytest.raises(InputError, match=r"at least 0\.250"):
        check_budget(0.2, costs, full)
    for bad in (math.nan, math.inf, "0.5", True):
        with pytest.raises(InputError, match="budget"):
            check_budget(bad, costs, full)
    with pytest.raises(InputError, match="re-export"):
        patch_costs({63: 1, 224: 10}, [63, 95], 224)


def test_savings_note_says_plainly_when_anchornet_alone_costs_the_full_image():
    pays, note = savings_note(395_000_000, 384_000_000)
    assert not pays and "cannot be cheaper" in note and "1.03x" in note
    pays, note = savings_note(395_000_000, 4_100_000_000)
    assert pays and "0.10x" in note and "under 0.90x" in note


def with_budget(
    plain: Pipeline, budget: float | None, early_exit: float | None = None, preset: str | None = None
) -> Pipeline:
    return Pipeline(
        plain.bundle,
        plain.anchornet,
        plain.downstream,
        lsp=PRESETS[preset] if preset else plain.lsp,
        vote_min=plain.vote_min,
        budget=budget,
        early_exit=early_exit,
    )


def spent(prediction, costs: dict[int, int]) -> int:
    return sum(costs[int(x1 - x0)] for x0, _, x1, _ in prediction.boxes)


@pytest.mark.parametrize("budget", [0.3, 0.5, 1.0])
def test_the_pipeline_never_exceeds_its_cap_and_takes_the_plain_patches_in_order(
    plain, images, plain_predictions, budget
):
    entry = plain.bundle.downstream
    costs, full = {s: entry.multiply_adds[s] for s in entry.patch_sizes}, entry.multiply_adds[plain.bundle.crop]
    cut = 0
    for got, whole in zip(with_budget(plain, budget).predict_batch(images), plain_predictions):
        assert spent(got, costs) <= budget * full
        n = len(got.boxes)
        assert n >= 1 and got.boxes.tolist() == whole.boxes[:n].tolist()
        np.testing.assert_allclose(got.patch_probs, whole.patch_probs[:n], atol=1e-5)
        if n < len(whole.boxes):  # the next plain patch would have broken the cap
            cut += 1
            assert spent(got, costs) + costs[int(whole.boxes[n][2] - whole.boxes[n][0])] > budget * full
    if budget == 0.3:
        assert cut > 0, "no image was cut at 0.3: the test proves nothing"


def test_budget_one_with_patches_to_spare_equals_the_plain_pipeline(plain, images):
    # The `visual` preset takes at most 5 / 3 / 2 patches of 63 / 95 / 111: within the full image's cost here.
    entry = plain.bundle.downstream
    costs, full = {s: entry.multiply_adds[s] for s in entry.patch_sizes}, entry.multiply_adds[plain.bundle.crop]
    visual = with_budget(plain, None, preset="visual").predict_batch(images)
    affordable = [i for i, p in enumerate(visual) if spent(p, costs) <= full]
    assert len(affordable) == len(images) and any(len(p.boxes) > 1 for p in visual)
    got = with_budget(plain, 1.0, preset="visual").predict_batch(images)
    for prediction, whole in zip(got, visual):
        assert prediction.boxes.tolist() == whole.boxes.tolist()
        assert (prediction.class_id, prediction.branch) == (whole.class_id, whole.branch)
        assert prediction.score == pytest.approx(whole.score, abs=1e-5)


def test_early_exit_stops_within_the_budget(plain, images):
    capped = with_budget(plain, 0.5).predict_batch(images)
    both = with_budget(plain, 0.5, early_exit=0.0).predict_batch(images)
    for alone, with_exit in zip(capped, both):
        assert len(with_exit.boxes) == 1 and with_exit.boxes.tolist() == alone.boxes[:1].tolist()


def test_from_bundle_and_the_cli_refuse_a_budget_too_small_for_one_patch(small_bundle, images):
    with pytest.raises(InputError, match="at least"):
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, budget=0.01)
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, budget=0.5) as pipeline:
        assert pipeline.budget == 0.5 and pipeline(images[0]).boxes.shape[1] == 4
