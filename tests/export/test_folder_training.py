"""Training on a user's own folder: the layouts, the held-out split, unreadable files, and one command to a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.errors import InputError
from export.data.folder import TUNE, ImageFolder
from export.data.source import HELD_OUT, TRAIN
from export.training.anchornet import SMALL_WINDOW_SHARE
from export.training.common import load_checkpoint
from export.training.folder_steps import ANCHORNET_WINDOW_SHARE


def write_class_folders(root, photos, per_class: int = 5, names=("astronaut", "coffee")):
    """Class folders of real photo crops: class k is crops of the k-th named photo."""
    by_name = dict(photos)
    rng = np.random.default_rng(0)
    for name in names:
        photo = by_name[name]
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            side = int(rng.integers(200, min(photo.shape[:2])))
            y, x = (int(rng.integers(photo.shape[k] - side + 1)) for k in (0, 1))
            cv2.imwrite(str(root / name / f"{j:02d}.jpg"), photo[y : y + side, x : x + side])
    return root


def test_every_fifth_file_of_a_class_is_held_out(tmp_path, photos):
    folder = ImageFolder.open(write_class_folders(tmp_path / "data", photos, per_class=10))
    assert folder.class_names == ("astronaut", "coffee")
    assert folder.count(TRAIN) == 16 and folder.count(HELD_OUT) == 4
    held = [path.name for path, _ in folder.files[HELD_OUT]]
    assert held == ["04.jpg", "09.jpg", "04.jpg", "09.jpg"]
    assert {label for _, label in folder.files[HELD_OUT]} == {0, 1}


def test_every_twentieth_training_file_is_held_back_to_choose_the_vote_on_when_they_are_enough(
    tmp_path, photos, monkeypatch
):
    data = write_class_folders(tmp_path / "data", photos, per_class=15)
    assert TUNE not in ImageFolder.open(data).files, "2 files to choose on: fewer than the choice needs, none held back"
    monkeypatch.setattr("export.data.folder.MIN_TUNING_IMAGES", 2)
    folder = ImageFolder.open(data)
    # Held out: 04, 09, 14. Training files by position: 00-03, 05-08, 10-13; position 10 of each class is 12.jpg.
    assert [(path.name, label) for path, label in folder.files[TUNE]] == [("12.jpg", 0), ("12.jpg", 1)]
    assert folder.count(TRAIN) == 22 and folder.count(HELD_OUT) == 6
    assert not set(folder.files[TUNE]) & set(folder.files[TRAIN])


def test_given_train_and_val_folders_are_the_split(tmp_path, photos):
    write_class_folders(tmp_path / "data" / "train", photos, per_class=3)
    write_class_folders(tmp_path / "data" / "val", photos, per_class=1)
    folder = ImageFolder.open(tmp_path / "data")
    assert folder.count(TRAIN) == 6 and folder.count(HELD_OUT) == 2


def test_a_held_out_sample_is_the_runtimes_centre_crop_and_training_crops_vary(tmp_path, photos):
    from anchor_edge.method.preprocess import load_image, resize_and_crop

    folder = ImageFolder.open(write_class_folders(tmp_path / "data", photos))
    path, label = folder.files[HELD_OUT][0]
    sample = folder.sample(HELD_OUT, 0)
    runtime, _ = resize_and_crop(load_image(path))
    assert sample.label == label and sample.box is None
    assert np.array_equal(sample.image[:, :, ::-1], runtime)
    first, again = folder.sample(TRAIN, 3, seed=1), folder.sample(TRAIN, 3, seed=1)
    assert np.array_equal(first.image, again.image) and first.image.shape == (224, 224, 3)
    # one epoch visits every training file once
    assert sorted(folder.sample(TRAIN, i).label for i in range(folder.count(TRAIN))) == sorted(
        label for _, label in folder.files[TRAIN]
    )


def test_without_mirroring_the_training_crops_are_the_same_crops_never_mirrored(tmp_path, photos):
    root = write_class_folders(tmp_path / "data", photos)
    mirroring, plain = ImageFolder.open(root), ImageFolder.open(root, mirror=False)
    views = [mirroring.view(TRAIN, i, seed=2) for i in range(40)]
    assert sum(mirrored for *_, mirrored in views) > 0, "with mirroring, some of 40 crops are mirrored"
    for i, (position, top, left, mirrored) in enumerate(views):
        assert plain.view(TRAIN, i, seed=2) == (position, top, left, False)
        crop = plain.sample(TRAIN, i, seed=2).image
        assert np.array_equal(crop[:, ::-1] if mirrored else crop, mirroring.sample(TRAIN, i, seed=2).image)


def test_no_mirror_without_a_folder_is_a_usage_error(capsys):
    from export.train import main

    with pytest.raises(SystemExit) as stopped:
        main(["--no-mirror"])
    assert stopped.value.code == 2 and "--no-mirror is for your folder" in capsys.readouterr().err


def test_unreadable_files_are_left_out_and_bad_folders_refused(tmp_path, photos, caplog):
    root = write_class_folders(tmp_path / "data", photos, per_class=6)
    (root / "coffee" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "coffee" / "notes.txt").write_text("ignored: not an image suffix")
    folder = ImageFolder.open(root)
    assert all(path.name != "broken.jpg" for path, _ in folder.files[TRAIN] + folder.files[HELD_OUT])
    assert "broken.jpg" in caplog.text
    with pytest.raises(InputError, match="not a folder"):
        ImageFolder.open(tmp_path / "missing")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(InputError, match="at least two"):
        ImageFolder.open(tmp_path / "one")
    sparse = write_class_folders(tmp_path / "sparse", photos, per_class=3)
    with pytest.raises(InputError, match="no readable test images"):
        ImageFolder.open(sparse)


def test_train_on_a_folder_gives_a_bundle_in_one_command(tmp_path, photos):
    from export.train import main

    data = write_class_folders(tmp_path / "data", photos)
    out, bundle = tmp_path / "weights", tmp_path / "bundle"
    code = main(
        [
            "--data",
            str(data),
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--bundle",
            str(bundle),
            "--scale",
            "0.0002",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "training_report.json").read_text())
    assert list(report) == ["full", "anchornet", "patches", "anchor_vote"], "the downstream learns, then teaches"
    assert report["anchor_vote"]["images"] == 0 and report["anchor_vote"]["weight"] == 0, "8 files: none held back"
    assert report["anchornet"]["box_supervision"] is False and report["anchornet"]["centre_supervision"] is True
    assert report["anchornet"]["teacher"]["files"] == 8 and report["anchornet"]["mirrored"] is True
    assert report["anchornet"]["steps"] == 2  # 40 planned images at batch 32, rounded up
    anchornet_run = load_checkpoint(tmp_path / "work" / "anchornet_state.pt")["run"]
    assert anchornet_run["small_window_share"] == ANCHORNET_WINDOW_SHARE < SMALL_WINDOW_SHARE, "a folder's own share"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["class_names"] == ["astronaut", "coffee"] and manifest["trained"] is True
    assert manifest["lsp"]["preset"] == "visual", "the bundle runs the preset whose patches its downstream learned"
    assert manifest["decision"]["branch_rule"] == "widest", "an AnchorNet trained without boxes learned no sizes"
    assert manifest["decision"]["heatmap"] == "max", "and its decided class is often wrong"
    assert manifest["decision"]["anchor_vote"] == 0, "too few files to choose a vote on: the paper's rule"
    with Pipeline.from_bundle(bundle, backend="onnxruntime", threads=1) as pipe:
        prediction = pipe(dict(photos)["astronaut"])
    assert prediction.label in ("astronaut", "coffee") and len(prediction.boxes) >= 1
    assert prediction.branch == 111 and {int(x1 - x0) for x0, _, x1, _ in prediction.boxes} == {111}


def test_the_vote_is_chosen_on_the_held_back_files_and_the_check_set_is_made_with_it(tmp_path, photos, monkeypatch):
    from anchor_edge.bundle.check_set import verify_bundle
    from anchor_edge.method.anchor_vote import choose_anchor_vote
    from export.train import main

    for module in ("export.data.folder", "export.training.anchor_vote", "anchor_edge.method.anchor_vote"):
        monkeypatch.setattr(f"{module}.MIN_TUNING_IMAGES", 2)
    # One candidate, a weight where AnchorNet outvotes the patches: a check set made without it would not match.
    only_eight = lambda means, votes, labels: choose_anchor_vote(means, votes, labels, (8.0,))  # noqa: E731
    monkeypatch.setattr("export.training.anchor_vote.choose_anchor_vote", only_eight)
    data = write_class_folders(tmp_path / "data", photos, per_class=15)
    out, bundle = tmp_path / "weights", tmp_path / "bundle"
    argv = ["--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / "work"), "--bundle", str(bundle)]
    assert main([*argv, "--scale", "0.0002", "--threads", "1"]) == 0
    report = json.loads((out / "training_report.json").read_text())
    vote = report["anchor_vote"]
    assert report["anchornet"]["teacher"]["files"] == 22, "the two held-back files are not taught on"
    assert vote["images"] == 2 and list(vote["top1"]) == ["8.0"] and vote["weight"] == 8.0
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["decision"]["anchor_vote"] == 8.0
    result = verify_bundle(bundle, record=False, backend="onnxruntime", threads=1)
    assert result.top1_agreement == 1.0 and result.max_abs_diff["class_distribution"] < 1e-5, "made with the vote"


def test_the_folder_plan_outlasts_its_budget_on_a_big_folder_and_keeps_floors_on_a_small_one():
    from export.training.folder_steps import folder_plan
    from export.training.user_downstream import open_user_downstream

    untrained = open_user_downstream("efficientnet_lite0")
    # 12,000 files: 30, 40 and 10 epochs, more than 2 cores get through in 30, 72 and 18 minutes of a 120-minute
    # budget (Lite0 trains 10-16 images/s at 224 here, AnchorNet about 60), so the budget, not the plan, ends each step.
    assert folder_plan(untrained, False, 12_000) == [
        ("full", 0.25, 360_000),
        ("anchornet", 0.6, 480_000),
        ("patches", 0.15, 120_000),
    ]
    # 100 files: the floors, so a small folder still gets the digits recipe's 200k AnchorNet images.
    assert [images for _, _, images in folder_plan(untrained, False, 100)] == [8_000, 200_000, 4_000]


def test_train_refuses_a_bad_folder_with_exit_code_one(tmp_path, capsys):
    from export.train import main

    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "w")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_a_folders_weights_never_default_to_the_committed_ones(tmp_path):
    from export.train import default_out

    assert default_out(None) == Path("weights")
    assert default_out(tmp_path / "photos") == Path("runs") / "photos"
    assert default_out(Path("photos/")) == Path("runs") / "photos"


def test_only_refuses_a_step_the_plan_does_not_have(tmp_path, photos, capsys):
    from export.train import main
    from export.training.folder_steps import train_on_folder
    from export.training.user_downstream import open_user_downstream

    with pytest.raises(SystemExit) as stop:  # the digits plans are known before any training
        main(["--architecture", "resnet50", "--only", "resized", "--out", str(tmp_path / "w")])
    assert stop.value.code == 2 and "not a step of the resnet50 recipe" in capsys.readouterr().err
    folder = ImageFolder.open(write_class_folders(tmp_path / "photos", photos))
    untrained = open_user_downstream("efficientnet_lite0")  # no checkpoint: its plan is full, anchornet, patches
    with pytest.raises(InputError, match="--only resized: not a step of this run, whose steps are full, anchornet"):
        train_on_folder(
            folder, untrained, out=tmp_path / "w", work_dir=tmp_path / "k", budget_minutes=1, only=("resized",)
        )


def test_a_partial_rerun_keeps_the_other_steps_reports_and_a_whole_run_replaces_them(tmp_path):
    from export.train import write_report

    path = tmp_path / "training_report.json"
    write_report(
        path, {"full": {"steps": 5}, "anchornet": {"attention": 91.0}, "patches": {"steps": 10}}, partial=False
    )
    write_report(path, {"anchor_vote": {"weight": 2.0}}, partial=True)  # what the export chose
    write_report(path, {"patches": {"steps": 20}}, partial=True, stale=("anchor_vote",))
    assert json.loads(path.read_text()) == {
        "full": {"steps": 5},
        "anchornet": {"attention": 91.0},
        "patches": {"steps": 20},
    }, "the vote chosen for the patches before is stale"
    write_report(path, {"anchornet": {"attention": 88.0}}, partial=False)  # say, a trained downstream kept as it is
    assert json.loads(path.read_text()) == {"anchornet": {"attention": 88.0}}


@pytest.mark.parametrize("flag", ["--budget-minutes", "--scale"])
@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_budget_or_scale_that_trains_nothing_is_a_usage_error(tmp_path, capsys, flag, value):
    from export.train import main

    with pytest.raises(SystemExit) as stop:
        main(["--data", str(tmp_path), flag, value, "--out", str(tmp_path / "w")])
    assert stop.value.code == 2 and f"{flag}: must be above 0, got {value}" in capsys.readouterr().err


def test_a_mirrored_runs_checkpoint_is_not_resumed_by_a_run_that_never_mirrors(tmp_path, photos):
    from export.training.common import resume_state, run_identity, save_checkpoint

    root = write_class_folders(tmp_path / "photos", photos)
    mirrored, unmirrored = ImageFolder.open(root), ImageFolder.open(root, mirror=False)
    save_checkpoint(tmp_path / "state.pt", {"step": 4, "run": run_identity("anchornet", mirrored, seed=0)})
    with pytest.raises(InputError, match=r"never mirrored\)' here"):
        resume_state(tmp_path / "state.pt", run_identity("anchornet", unmirrored, seed=0))


def test_a_checkpoint_of_the_folder_before_a_file_was_removed_is_not_resumed(tmp_path, photos):
    """Removing 02.jpg moves 05.jpg onto a held-out position (every fifth of a class): resuming would score
    images the checkpoint trained on."""
    from export.training.common import resume_state, run_identity, save_checkpoint

    root = write_class_folders(tmp_path / "photos", photos, per_class=7)
    before = ImageFolder.open(root)
    save_checkpoint(tmp_path / "state.pt", {"step": 4, "run": run_identity("anchornet", before, seed=0)})
    assert resume_state(tmp_path / "state.pt", run_identity("anchornet", ImageFolder.open(root), seed=0))["step"] == 4
    (root / "coffee" / "02.jpg").unlink()
    after = ImageFolder.open(root)
    assert [p.name for p, label in after.files[HELD_OUT] if label == 1] == ["05.jpg"]
    assert [p.name for p, label in before.files[HELD_OUT] if label == 1] == ["04.jpg"]
    with pytest.raises(InputError, match="another run"):
        resume_state(tmp_path / "state.pt", run_identity("anchornet", after, seed=0))


def test_the_digits_folder_reads_back_with_its_labels(tmp_path):
    from export.data.digits import make_sample
    from export.data.digits_folder import write_folder

    write_folder(tmp_path / "digits", train=20, test=10)
    folder = ImageFolder.open(tmp_path / "digits")
    assert folder.class_names == tuple(str(d) for d in range(10))
    assert folder.count(TRAIN) == 20 and folder.count(HELD_OUT) == 10
    # held-out sample i is test sample i (class i % 10), and its image is the runtime's crop of it
    sample = folder.sample(HELD_OUT, 3)
    assert sample.label == 3
    assert np.array_equal(sample.image, make_sample("test", 3).image[16:240, 16:240])


def test_the_export_line_printed_without_bundle_exports_what_bundle_would(tmp_path):
    """The same preset as `--bundle` and, for a folder, its held-out images as the check set, into its own bundle
    (AnchorNet's vote apart: only --bundle chooses it)."""
    import shlex

    from export.cli import build_parser
    from export.train import _export_command
    from export.training.downstream import FINE_TUNING_PRESET

    spec = "efficientnet_lite0:runs/shoes/efficientnet_lite0/downstream_patches.pt"
    line = _export_command(Path("runs/shoes/anchornet.pt"), spec, tmp_path / "shoes")
    assert line.startswith("python export/to_trt.py ")
    folder = build_parser().parse_args(shlex.split(line)[2:])
    assert (folder.anchornet, folder.downstream) == (Path("runs/shoes/anchornet.pt"), spec)
    assert folder.preset == FINE_TUNING_PRESET and folder.check_dir == tmp_path / "shoes"
    assert folder.out == Path("bundles/shoes"), "never the default bundle's directory"
    digits = build_parser().parse_args(shlex.split(_export_command(Path("weights/anchornet.pt"), "resnet50", None))[2:])
    assert digits.preset == FINE_TUNING_PRESET and digits.check_dir is None
    spaced = build_parser().parse_args(
        shlex.split(_export_command(Path("my run/a.pt"), spec, tmp_path / "default"))[2:]
    )
    assert spaced.anchornet == Path("my run/a.pt") and spaced.out == Path("bundles/default-folder")


def test_the_printed_eval_line_scores_the_bundle_on_the_images_training_did_not_see(tmp_path):
    import shlex

    from anchor_edge.cli.parser import build_parser
    from export.train import _eval_command

    flat, split = tmp_path / "shoes", tmp_path / "split photos"
    for folder in (flat / "boot", split / "train" / "boot", split / "val" / "boot"):
        folder.mkdir(parents=True)
    line = build_parser().parse_args(shlex.split(_eval_command(None, flat))[1:])
    assert (line.command, line.bundle, line.data, line.held_out) == ("eval", Path("bundles/shoes"), flat, True)
    line = build_parser().parse_args(shlex.split(_eval_command(tmp_path / "my bundle", split))[1:])
    assert (line.bundle, line.data, line.held_out) == (tmp_path / "my bundle", split, False)  # val/ is scored
