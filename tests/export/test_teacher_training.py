"""`python -m export.train --data DIR --downstream SPEC`: a trained downstream teaches AnchorNet, is kept bit-identical
with --keep-downstream or fine-tuned on patches without it, and `anchor-edge eval` scores the bundle on the folder."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
import torchvision

from export.train import main

pytest.importorskip("onnxruntime")


@pytest.fixture()
def folder(tmp_path):
    """Two classes, five images each: a red or a blue square on a noisy background, anywhere."""
    rng = np.random.default_rng(0)
    for name, colour in (("blue", (255, 0, 0)), ("red", (0, 0, 255))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for j in range(5):
            image = rng.integers(0, 120, (256, 256, 3), dtype=np.uint8)
            x, y = (int(v) for v in rng.integers(0, 200, 2))
            image[y : y + 56, x : x + 56] = colour
            cv2.imwrite(str(tmp_path / "data" / name / f"{j}.png"), image)
    return tmp_path / "data"


@pytest.fixture()
def trained_resnet18(tmp_path):
    """The user's "trained" network: a two-class ResNet-18 checkpoint (seeded weights, which is all training needs)."""
    torch.manual_seed(0)
    path = tmp_path / "mine.pt"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), path)
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_keep_downstream_bundles_the_users_network_bit_identical_and_eval_scores_it(
    tmp_path, folder, trained_resnet18, capsys
):
    from anchor_edge.cli.main import main as anchor_edge

    before = sha256(trained_resnet18)
    out, bundle = tmp_path / "weights", tmp_path / "bundle"
    code = main(
        [
            "--data",
            str(folder),
            "--downstream",
            f"resnet18:{trained_resnet18}",
            "--keep-downstream",
            "--no-mirror",
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
    assert list(report) == ["anchornet", "anchor_vote"], "a trained network is not retrained, and kept: not tuned"
    assert report["anchor_vote"]["weight"] == 0.0, "8 training files: none held back, the paper's rule"
    assert report["anchornet"]["centre_supervision"] is True and report["anchornet"]["mirrored"] is False
    assert report["anchornet"]["teacher"]["files"] == 8 and report["anchornet"]["steps"] == 2
    assert sha256(trained_resnet18) == before and not (out / "resnet18").exists()
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["models"]["downstream"]["weights"] == f"checkpoint:{trained_resnet18}"
    assert manifest["class_names"] == ["blue", "red"]
    # The bundle's downstream answers as the user's own network on the same input.
    import onnxruntime

    network = torchvision.models.resnet18(num_classes=2).eval()
    network.load_state_dict(torch.load(trained_resnet18, weights_only=True))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(
        str(bundle / manifest["models"]["downstream"]["file"]), providers=["CPUExecutionProvider"]
    )
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.allclose(onnx_logits, network(x).numpy(), atol=1e-4)

    capsys.readouterr()
    assert (
        anchor_edge(
            ["eval", str(bundle), "--data", str(folder), "--backend", "onnxruntime", "--threads", "1", "--json"]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored["images"] == 10 and set(scored["top1"]) == {"pipeline", "full_image", "anchornet"}

    # The docs' folder reports: the same eval, beside the training report, stamped with the bundle's files.
    from benchmarks.folder_run import main as folder_run

    written = tmp_path / "folder.json"
    arguments = [str(bundle), "--data", str(folder), "--weights", str(out), "--out", str(written), "--threads", "1"]
    assert folder_run(arguments) == 0
    run = json.loads(written.read_text())
    assert run["eval"]["images"] == 2 and "predictions" not in run["eval"]  # a flat folder: the 2 held out, and said
    assert run["scored"] == f"the files training held out of {folder} (every 5th file of a class folder, by path)"
    assert run["training"] == report
    assert run["bundle"]["sha256"]["downstream"] == sha256(bundle / manifest["models"]["downstream"]["file"])
    assert folder_run([*arguments[:3], "--weights", str(tmp_path / "nowhere"), "--out", str(written)]) == 1


def test_without_keep_the_trained_downstream_is_fine_tuned_from_its_own_weights(tmp_path, folder, trained_resnet18):
    out = tmp_path / "weights"
    code = main(
        [
            "--data",
            str(folder),
            "--downstream",
            f"resnet18:{trained_resnet18}",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--scale",
            "0.0002",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "training_report.json").read_text())
    assert list(report) == ["anchornet", "patches"] and report["patches"]["starts_from"] is None
    given = torch.load(trained_resnet18, weights_only=True)
    tuned = torch.load(out / "resnet18" / "downstream_patches.pt", weights_only=True)
    assert tuned.keys() == given.keys()
    # It started from the user's weights (one step at the warmup's small rate moves them little), and moved them.
    assert torch.allclose(tuned["conv1.weight"].float(), given["conv1.weight"], atol=1e-2)
    assert not torch.equal(tuned["fc.weight"].float(), given["fc.weight"].half().float())


def test_keep_needs_a_trained_downstream_and_a_file_spec_cannot_be_trained(tmp_path, folder, capsys):
    args = ["--data", str(folder), "--out", str(tmp_path / "w"), "--work-dir", str(tmp_path / "work")]
    for spec in ([], ["--downstream", "resnet18"]):  # a usage error, found before any image is read
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *spec, "--keep-downstream"])
        assert exit_info.value.code == 2
        assert "--keep-downstream keeps a trained downstream" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--only", "anchornet,trunk"])
    assert exit_info.value.code == 2 and "--only trunk: a step of the digits benchmark" in capsys.readouterr().err
    assert main([*args, "--downstream", "model.onnx"]) == 1
    assert "NAME[:CKPT], timm:NAME[:CKPT] or MODULE:CALLABLE[:CKPT]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--downstream", "resnet18", "--out", str(tmp_path / "w")])
    assert exit_info.value.code == 2


def test_a_rerun_taught_by_other_weights_refuses_the_first_runs_checkpoint(tmp_path, folder, trained_resnet18, capsys):
    args = ["--data", str(folder), "--downstream", f"resnet18:{trained_resnet18}", "--keep-downstream"]
    args += ["--out", str(tmp_path / "w"), "--work-dir", str(tmp_path / "work"), "--scale", "0.0002", "--threads", "1"]
    assert main(args) == 0
    torch.manual_seed(1)  # the user retrains their network into the same file
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), trained_resnet18)
    assert main(args) == 1  # its maps are made anew, and AnchorNet's checkpoint of the first teacher is not resumed
    error = capsys.readouterr().err
    assert "anchornet_state.pt holds the checkpoint of another run" in error and sha256(trained_resnet18) in error


def test_teacher_maps_that_take_the_whole_budget_stop_the_run_before_anchornet(
    tmp_path, folder, trained_resnet18, capsys
):
    out = tmp_path / "w"
    args = ["--data", str(folder), "--downstream", f"resnet18:{trained_resnet18}", "--keep-downstream"]
    assert main([*args, "--out", str(out), "--budget-minutes", "1e-6"]) == 1
    assert (
        "the teacher's maps of 8 of 8 training files took" in capsys.readouterr().err
        and (out / "checkpoints" / "teacher_maps.pt").is_file()  # without --work-dir, each --out is a run of its own
    )
    assert not (out / "anchornet.pt").exists()


def test_a_step_run_alone_without_the_step_before_it_says_which_to_run(tmp_path, folder, trained_resnet18, capsys):
    common = ["--data", str(folder), "--out", str(tmp_path / "w"), "--work-dir", str(tmp_path / "work")]
    assert main([*common, "--only", "anchornet"]) == 1  # an untrained downstream teaches once the full step trained it
    assert "train the full step first (--only full, or the whole plan)" in capsys.readouterr().err
    assert main([*common, "--downstream", f"resnet18:{trained_resnet18}", "--only", "patches"]) == 1
    assert "train the anchornet step first (--only anchornet, or the whole plan)" in capsys.readouterr().err
