"""The training recipes run, learn something and resume: a few steps on a handful of generated images."""

import math

import numpy as np
import pytest
import torch

from anchor_edge.errors import InputError
from export.data.digits import make_sample, network_input
from export.data.source import DIGITS, HELD_OUT, LabelledImage
from export.models.anchornet import AnchorNet
from export.models.downstream import EFFICIENTNET_LITE0, RESNET50
from export.models.trained_weights import downstream_weights
from export.training.anchornet import AUX_WEIGHT, anchornet_loss, train_anchornet
from export.training.common import (
    IMAGENET,
    Budget,
    _window_around,
    learning_rate,
    load_checkpoint,
    renormalize,
    resume_from,
    resume_state,
    run_identity,
    sample_batch,
    save_checkpoint,
    storage_copy,
    training_state,
)
from export.training.downstream import (
    RECIPES,
    SEED_OFFSET,
    build_downstream,
    localized_patches,
    normalization,
    resized_batch,
    train_downstream,
)

NORMALIZATION = normalization(EFFICIENTNET_LITE0)


def test_downstream_inputs_renormalized_for_anchornet_are_anchornets_own_inputs():
    for_downstream, _, _ = sample_batch("train", range(3), seed=0, normalization=NORMALIZATION)
    for_anchornet, _, _ = sample_batch("train", range(3), seed=0)
    assert NORMALIZATION != IMAGENET
    torch.testing.assert_close(renormalize(for_downstream, NORMALIZATION, IMAGENET), for_anchornet, atol=1e-5, rtol=0)
    # EfficientNet-Lite's (pixel - 127) / 128 by hand, for one pixel of the first image (BGR sample, RGB tensor)
    sample = sample_batch("train", [0], seed=0).samples[0]
    assert np.array_equal(sample.image, network_input(make_sample("train", 0).image))
    b, g, r = sample.image[10, 20].astype(float)
    assert for_downstream[0, :, 10, 20].tolist() == pytest.approx(
        [(r - 127) / 128, (g - 127) / 128, (b - 127) / 128], abs=1e-6
    )


def test_stored_weights_are_float16_and_load_back_into_float32():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    stored = storage_copy(model.state_dict())
    assert stored["0.weight"].dtype == torch.float16 and stored["1.num_batches_tracked"].dtype == torch.int64
    copy = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    copy.load_state_dict(stored)
    assert copy[0].weight.dtype == torch.float32
    torch.testing.assert_close(copy[0].weight, model[0].weight, atol=1e-3, rtol=1e-3)


def test_anchornet_loss_at_uniform_logits_is_three_branches_of_log_ten():
    # Zeroed classifiers give uniform logits: each CE is ln 10, and there are
    # three branches of (attention + GAP + AUX_WEIGHT * aux) terms.
    torch.manual_seed(0)
    model = AnchorNet(num_classes=10)
    for branch in model.branches:
        for layer in (branch.classifier, branch.attention.aux_classifier):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    images, labels, _ = sample_batch("train", range(2), seed=0, window=128)
    loss = anchornet_loss(model, images, labels)
    assert loss.item() == pytest.approx(3 * (2 + AUX_WEIGHT) * math.log(10), rel=1e-5)


def test_the_pooling_is_chosen_on_training_draws_not_on_the_held_out_images_reported(tmp_path, monkeypatch):
    import export.training.anchornet as recipe

    def measured(model, count, seed, batch_size=50, split=HELD_OUT, source=None):  # GAP wins on the held-out images
        return {"gap": 80.0, "attention": 70.0} if split == HELD_OUT else {"gap": 60.0, "attention": 90.0}

    monkeypatch.setattr(recipe, "measure_poolings", measured)
    report = train_anchornet(
        tmp_path / "out", images=2, batch_size=2, seed=0, work_dir=tmp_path / "work", eval_images=2, window_size=128
    )
    saved = torch.load(tmp_path / "out" / "anchornet.pt", weights_only=True)
    assert saved["pooling"] == report["pooling"] == "attention"
    assert (report["gap"], report["attention"]) == (80.0, 70.0)  # the held-out figures are still reported
    assert report["train_photos"] == {"gap": 60.0, "attention": 90.0}


def test_anchornet_recipe_trains_saves_the_bundle_checkpoint_and_resumes(tmp_path):
    report = train_anchornet(
        tmp_path / "out", images=2, batch_size=2, seed=0, work_dir=tmp_path / "work", eval_images=2, window_size=128
    )
    saved = torch.load(tmp_path / "out" / "anchornet.pt", weights_only=True)
    assert saved["num_classes"] == 10 and saved["trained"] is True
    assert saved["class_names"] == [str(d) for d in range(10)] and saved["pooling"] in ("gap", "attention")
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert report["steps"] == 1 and set(report) >= {"gap", "attention", "pooling"}
    train_anchornet(
        tmp_path / "out", images=4, batch_size=2, seed=0, work_dir=tmp_path / "work", eval_images=2, window_size=128
    )
    assert load_checkpoint(tmp_path / "work" / "anchornet_state.pt")["step"] == 2  # resumed at 1, not restarted
    with pytest.raises(InputError, match=r"another run \(seed 0 there, 1 here\); give this run a fresh --work-dir"):
        train_anchornet(tmp_path / "out", images=6, batch_size=2, seed=1, work_dir=tmp_path / "work", eval_images=2)
    assert load_checkpoint(tmp_path / "work" / "anchornet_state.pt")["step"] == 2  # the other run's state is kept


def test_anchornet_trains_on_windows_for_its_share_of_the_steps_then_on_whole_inputs(tmp_path, monkeypatch):
    import export.training.anchornet as recipe

    windows = []

    def recorded(split, indices, seed, window=224, **kwargs):
        windows.append(window)
        return sample_batch(split, indices, seed, window, **kwargs)

    monkeypatch.setattr(recipe, "sample_batch", recorded)
    monkeypatch.setattr(recipe, "measure_poolings", lambda *args, **kwargs: {"gap": 0.0, "attention": 0.0})
    common = dict(batch_size=2, seed=0, eval_images=2, window_size=128)
    train_anchornet(tmp_path / "a", images=8, work_dir=tmp_path / "wa", small_window_share=0.5, **common)
    assert windows == [128, 128, 224, 224]  # steps 0-1 of 4 are under half the run, steps 2-3 are not
    windows.clear()
    train_anchornet(tmp_path / "b", images=8, work_dir=tmp_path / "wb", **common)
    assert windows == [128, 128, 128, 128]  # the digits recipe's 0.9: step 3 is at 0.75 of the run
    with pytest.raises(InputError, match="small_window_share 0.9 there, 0.5 here"):  # the share is part of the run
        train_anchornet(tmp_path / "b", images=8, work_dir=tmp_path / "wb", small_window_share=0.5, **common)


def test_a_checkpoint_of_other_data_is_refused_and_one_without_a_run_record_resumes(tmp_path):
    digits_run = run_identity("anchornet", DIGITS, seed=0, batch_size=32)
    folder_run = {**digits_run, "data": "/home/me/photos"}
    save_checkpoint(tmp_path / "state.pt", {"step": 7, "run": digits_run})
    assert resume_state(tmp_path / "state.pt", digits_run)["step"] == 7
    with pytest.raises(InputError, match="data 'digits' there, '/home/me/photos' here"):
        resume_state(tmp_path / "state.pt", folder_run)
    save_checkpoint(tmp_path / "old.pt", {"step": 3})  # written before checkpoints named their run
    assert resume_state(tmp_path / "old.pt", folder_run)["step"] == 3
    assert resume_state(tmp_path / "none.pt", folder_run) is None


def test_anchornet_recipe_stops_at_an_exhausted_budget_and_never_writes_untrained_weights(tmp_path):
    work = tmp_path / "work"
    with pytest.raises(InputError, match="AnchorNet: no training step fit in its 0 minutes"):
        train_anchornet(tmp_path, images=64, batch_size=2, budget_minutes=0, seed=0, work_dir=work, eval_images=2)
    assert not (tmp_path / "anchornet.pt").exists()
    train_anchornet(tmp_path, images=2, batch_size=2, seed=0, work_dir=work, eval_images=2)  # one step, no limit
    # The rerun plans 32 steps, but its checkpoint has spent more than its 60 microseconds: it stops where it was.
    report = train_anchornet(
        tmp_path, images=64, batch_size=2, budget_minutes=1e-6, seed=0, work_dir=work, eval_images=2
    )
    assert report["steps"] == 1


def test_a_resumed_run_draws_the_random_numbers_the_stopped_one_would_have():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(3)
    torch.rand(5)  # the stopped run is somewhere into its random stream
    state = training_state(model, optimizer, 7, Budget(None, 12.0), {})
    expected = torch.rand(4)  # what it would have drawn next (dropout masks)
    torch.manual_seed(0)  # a resume re-seeds first
    step, budget = resume_from(state, model, optimizer, 2.0)
    assert step == 7 and budget.spent_before == pytest.approx(12.0, abs=1) and budget.limit == 120.0
    assert torch.equal(torch.rand(4), expected)


def test_a_damaged_checkpoint_is_an_input_error_that_says_what_to_do(tmp_path):
    save_checkpoint(tmp_path / "state.pt", {"step": 7})
    data = (tmp_path / "state.pt").read_bytes()
    (tmp_path / "state.pt").write_bytes(data[: len(data) // 2])  # torn, as a disk full or a copy cut short leaves it
    with pytest.raises(InputError, match=r"state.pt is not a readable checkpoint .*delete it"):
        load_checkpoint(tmp_path / "state.pt")


def _loss_on_first_batch(model: torch.nn.Module, kind: str) -> float:
    """Cross-entropy on the run's first batch (4 samples), in train mode (batch statistics, as the steps saw it)."""
    model.train()
    with torch.no_grad():
        if kind == "anchornet":
            batch = sample_batch("train", range(4), seed=0, window=128, easy_share=1.0)
            return anchornet_loss(model, batch.images, batch.labels).item()
        images, labels, _ = sample_batch(
            "train",
            range(4),
            seed=SEED_OFFSET[kind],
            window=128 if kind == "full" else 224,
            normalization=NORMALIZATION,
        )
        if kind == "resized":
            images = resized_batch(images, 63)
        return torch.nn.functional.cross_entropy(model(images), labels).item()


@pytest.mark.parametrize("kind", ["anchornet", "full", "resized"])
def test_a_few_steps_lower_the_loss_against_a_learning_rate_of_zero(tmp_path, monkeypatch, kind):
    """Three steps at the recipe's learning rate (no warmup) lower the loss on the first batch;
    at rate 0 they do not."""
    import export.training.anchornet as anchornet_recipe
    import export.training.downstream as downstream_recipe

    losses = {}
    for label, scale in (("trained", 1.0), ("control", 0.0)):
        out = tmp_path / label
        if kind == "anchornet":
            monkeypatch.setattr(anchornet_recipe, "WARMUP_STEPS", 1)
            train_anchornet(
                out,
                images=4 * 3,
                batch_size=4,
                seed=0,
                work_dir=out / "work",
                eval_images=2,
                window_size=128,
                peak_lr=anchornet_recipe.PEAK_LR * scale,
            )
            saved = torch.load(out / "anchornet.pt", weights_only=True)["state_dict"]
            model = AnchorNet(num_classes=10)
        else:
            monkeypatch.setattr(downstream_recipe, "WARMUP_STEPS", 1)
            recipe = RECIPES[EFFICIENTNET_LITE0]
            monkeypatch.setitem(
                RECIPES, EFFICIENTNET_LITE0, recipe._replace(peak_lr={k: 1e-3 * scale for k in recipe.kinds})
            )
            train_downstream(
                kind, out, architecture=EFFICIENTNET_LITE0, images=4 * 3, batch_size=4, seed=0, work_dir=out / "work"
            )
            saved = torch.load(downstream_weights(out, EFFICIENTNET_LITE0, kind), weights_only=True)
            model = build_downstream(EFFICIENTNET_LITE0)
        model.load_state_dict(saved)
        losses[label] = _loss_on_first_batch(model, kind)
    assert losses["trained"] < losses["control"] - 0.05, losses


def test_patch_fine_tuning_starts_from_the_full_model_and_uses_localized_patches(tmp_path, monkeypatch):
    import export.training.downstream as downstream_recipe

    monkeypatch.setattr(downstream_recipe, "WARMUP_STEPS", 1)
    torch.manual_seed(1)
    full = downstream_weights(tmp_path, EFFICIENTNET_LITE0, "full")
    full.parent.mkdir()
    torch.save(build_downstream(EFFICIENTNET_LITE0).state_dict(), full)
    anchornet = AnchorNet(num_classes=10)
    torch.save({"state_dict": anchornet.state_dict(), "num_classes": 10, "pooling": "gap"}, tmp_path / "anchornet.pt")
    train_downstream(
        "patches", tmp_path, architecture=EFFICIENTNET_LITE0, images=2, batch_size=2, seed=0, work_dir=tmp_path / "work"
    )
    start = torch.load(full, weights_only=True)
    tuned = torch.load(downstream_weights(tmp_path, EFFICIENTNET_LITE0, "patches"), weights_only=True)
    # weights are stored in float16: compare with the starting weights rounded the same way
    assert any(not torch.equal(start[k].half(), tuned[k]) for k in start if start[k].is_floating_point())
    images, _, _ = sample_batch("train", range(2), seed=0)
    for boxes in localized_patches(anchornet.eval(), images):
        sizes = {x1 - x0 for x0, _, x1, _ in boxes}
        assert len(sizes) == 1 and sizes <= {63, 95, 111}  # all from the one decided branch
        assert all(0 <= x0 and x1 <= 224 and y1 - y0 == x1 - x0 for x0, y0, x1, y1 in boxes)


def test_learning_rate_warms_up_then_decays_to_two_percent():
    assert learning_rate(0, 0.0, 1.0, warmup=4) == pytest.approx(0.25)
    assert learning_rate(10, 0.0, 1.0, warmup=4) == pytest.approx(1.0)
    assert learning_rate(10, 0.5, 1.0, warmup=4) == pytest.approx(0.51)
    assert learning_rate(10, 1.0, 1.0, warmup=4) == pytest.approx(0.02)


def test_budget_carries_time_spent_before_a_resume():
    assert Budget(1.0, spent_seconds=61).exhausted()
    assert not Budget(None, spent_seconds=1e9).exhausted()
    assert Budget(2.0, spent_seconds=60).fraction() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("box", [(0, 0, 40, 50), (120, 100, 224, 204), (60, 10, 160, 110)])
def test_training_window_holds_the_whole_digit_and_moves_its_box(box):
    image = np.arange(224 * 224 * 3, dtype=np.int64).reshape(224, 224, 3)
    for seed in range(5):
        sample = LabelledImage(image, 0, box, 0)
        window = _window_around(sample, 128 if box[2] - box[0] <= 128 else 160, np.random.default_rng(seed))
        top, left = divmod(int(window.image[0, 0, 0]) // 3, 224)
        side = window.image.shape[0]
        assert left <= box[0] and box[2] <= left + side and top <= box[1] and box[3] <= top + side
        assert window.box == (box[0] - left, box[1] - top, box[2] - left, box[3] - top)


@pytest.mark.slow
def test_resnet50_full_and_patch_networks_both_fine_tune_from_one_trunk(tmp_path):
    """The fair comparison: both start from the trunk's weights; only the patch network's are tuned on patches."""
    torch.save(
        {"state_dict": AnchorNet(num_classes=10).state_dict(), "num_classes": 10, "pooling": "gap"},
        tmp_path / "anchornet.pt",
    )
    work = tmp_path / "work"
    reports = {
        kind: train_downstream(kind, tmp_path, architecture=RESNET50, images=2, batch_size=2, seed=0, work_dir=work)
        for kind in RECIPES[RESNET50].kinds
    }
    assert [reports[kind]["starts_from"] for kind in ("trunk", "full", "patches")] == [None, "trunk", "trunk"]
    assert reports["full"]["steps"] == reports["patches"]["steps"] == 1
    trunk = torch.load(downstream_weights(work, RESNET50, "trunk"), weights_only=True)
    full = torch.load(downstream_weights(tmp_path, RESNET50, "full"), weights_only=True)
    patches = torch.load(downstream_weights(tmp_path, RESNET50, "patches"), weights_only=True)
    assert not downstream_weights(tmp_path, RESNET50, "trunk").exists()  # the trunk stays in the work dir
    # One AdamW step moves a weight by about the learning rate, a random start is ~0.02 away: both start at the trunk.
    for tuned in (full, patches):
        assert (tuned["fc.weight"].float() - trunk["fc.weight"].float()).abs().max() < 10 * RECIPES[RESNET50].peak_lr[
            "full"
        ]
    # Each saw its own data: BatchNorm's running statistics moved apart (whole images against patches).
    stats = "bn1.running_mean"
    assert not torch.equal(trunk[stats], full[stats]) and not torch.equal(full[stats], patches[stats])


def test_a_step_the_architectures_recipe_does_not_have_is_refused(tmp_path):
    with pytest.raises(InputError, match="resized"):
        train_downstream("resized", tmp_path, architecture=RESNET50, images=2, work_dir=tmp_path)
    with pytest.raises(InputError, match="no training recipe"):
        train_downstream("full", tmp_path, architecture="resnet18", images=2, work_dir=tmp_path)


def test_a_step_whose_starting_weights_were_never_trained_says_which_step_to_run(tmp_path):
    with pytest.raises(InputError, match=r"the full step starts from the trunk step's weights, .*\(--only trunk"):
        train_downstream("full", tmp_path, architecture=RESNET50, images=2, batch_size=2, seed=0, work_dir=tmp_path)


def test_the_steps_that_run_share_the_whole_budget():
    from export.training.common import steps_that_run

    plan = [("full", 0.25, 10), ("anchornet", 0.6, 20), ("patches", 0.15, 5)]
    assert steps_that_run(plan, None) == plan
    assert steps_that_run(plan, ("anchornet",)) == [("anchornet", 1.0, 20)]
    full, patches = steps_that_run(plan, ("patches", "full"))  # plan order, shares 0.25 / 0.40 and 0.15 / 0.40
    assert full == ("full", pytest.approx(0.625), 10) and patches == ("patches", pytest.approx(0.375), 5)
