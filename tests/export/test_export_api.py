"""`export_bundle` from in-memory modules and from an ONNX file: bundles that predict and verify like any other.

Labels are checked against the names written to the class-names file, and
the downstream's logits in the bundle against the in-memory timm model fed
timm's own normalisation, worked out here on the 0-1 scale.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision

from anchor_edge import Pipeline
from anchor_edge.bundle.check_set import verify_bundle
from anchor_edge.errors import InputError
from anchor_edge.method.preprocess import normalize
from export import export_bundle
from export.graph.verify import photo_crops

timm = pytest.importorskip("timm")

REPO = Path(__file__).resolve().parents[2]
NAMES = [f"digit {d}" for d in range(10)]


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("names") / "names.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def in_memory_bundle(small_models, names_file, tmp_path_factory):
    torch.manual_seed(0)
    downstream = timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()
    modules, _, _ = small_models
    out = export_bundle(
        modules.anchornet, downstream, tmp_path_factory.mktemp("api") / "bundle", class_names=names_file
    )
    return out, downstream


@pytest.mark.slow
def test_export_bundle_from_in_memory_modules_records_timm_normalisation_and_names(in_memory_bundle):
    out, downstream = in_memory_bundle
    manifest = json.loads((out / "bundle.json").read_text())
    entry = manifest["models"]["downstream"]
    assert manifest["class_names"] == NAMES and entry["weights"] == "in-memory" and entry["name"] == "ResNet"
    assert entry["mean"] == pytest.approx([127.5] * 3) and entry["std"] == pytest.approx([127.5] * 3)
    crops = photo_crops(224)[:, 80:175, 80:175]
    session = ort.InferenceSession(str(out / entry["file"]), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"image": normalize(crops, entry["mean"], entry["std"])})
    with torch.no_grad():
        expected = downstream((torch.from_numpy(crops).float().permute(0, 3, 1, 2) / 255 - 0.5) / 0.5).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_class_names_from_a_file_reach_the_prediction_label(in_memory_bundle, photos):
    out, _ = in_memory_bundle
    with Pipeline.from_bundle(out, backend="onnxruntime", threads=1) as pipe:
        predictions = [pipe(image) for _, image in photos[:3]]
    assert all(p.label == NAMES[p.class_id] for p in predictions)


@pytest.fixture(scope="module")
def onnx_bundle(small_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torchvision.models.resnet18(num_classes=10).eval(),
            (torch.zeros(1, 3, 224, 224),),
            str(folder / "resnet18.onnx"),
            dynamo=False,
            input_names=["data"],
            output_names=["prob"],
        )
    _, anchornet_ckpt, _ = small_models
    return export_bundle(
        anchornet_ckpt,
        folder / "resnet18.onnx",
        folder / "bundle",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        pixel_range="0-1",
    )


@pytest.mark.slow
def test_a_bundle_from_an_onnx_file_predicts_and_verifies(onnx_bundle, photos):
    manifest = json.loads((onnx_bundle / "bundle.json").read_text())
    assert manifest["models"]["downstream"]["weights"].startswith("onnx:")
    assert manifest["models"]["downstream"]["verification"]["sizes"] == [224]
    with Pipeline.from_bundle(onnx_bundle, backend="onnxruntime", threads=1) as pipe:
        prediction = pipe(photos[0][1])
    assert 0 <= prediction.class_id < 10 and prediction.label == f"class_{prediction.class_id}"
    result = verify_bundle(onnx_bundle, backend="onnxruntime")
    assert result.passed and result.top1_agreement == 1.0


def test_export_bundle_refuses_bad_arguments_before_writing(tmp_path):
    with pytest.raises(InputError, match="vote_min"):
        export_bundle(None, "resnet18", tmp_path / "b", vote_min=4)
    with pytest.raises(InputError, match="branch_rule must be one of confident, widest"):
        export_bundle(None, "resnet18", tmp_path / "b", branch_rule="largest")
    with pytest.raises(InputError, match="heatmap must be one of class, max"):
        export_bundle(None, "resnet18", tmp_path / "b", heatmap="logits")
    with pytest.raises(InputError, match="downstream must be an nn.Module, a spec string or a path"):
        export_bundle(None, 42, tmp_path / "b")
    assert not any(tmp_path.iterdir())


def test_checkpoints_that_name_their_classes_differently_are_refused_before_writing(small_models, tmp_path):
    """AnchorNet's decided class indexes its names; the downstream's scores index its own: one order for both."""
    models, _, _ = small_models
    names = [f"c{i}" for i in range(10)]
    torch.save({"state_dict": models.anchornet.state_dict(), "class_names": names}, tmp_path / "anchornet.pt")
    torch.save({"state_dict": models.downstream.state_dict(), "class_names": names[::-1]}, tmp_path / "resnet18.pt")
    out = tmp_path / "b"
    with pytest.raises(InputError, match=r"downstream resnet18 records disagree .*same classes, in one order"):
        export_bundle(tmp_path / "anchornet.pt", f"resnet18:{tmp_path / 'resnet18.pt'}", out)
    assert not out.exists()


@pytest.mark.slow
def test_the_command_line_passes_the_flags_and_refuses_a_contradiction(tmp_path):
    script = [sys.executable, str(REPO / "export" / "to_trt.py"), "--num-classes", "10", "--out", str(tmp_path / "b")]
    contradiction = subprocess.run(
        [*script, "--downstream", "timm:test_resnet", "--mean", "0.485,0.456,0.406", "--pixel-range", "0-1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert contradiction.returncode == 1, contradiction.stderr
    assert "the mean flag disagrees with downstream timm:test_resnet" in contradiction.stderr
    unscaled = subprocess.run(
        [*script, "--downstream", "resnet18", "--mean", "0.5,0.5,0.5"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert unscaled.returncode == 1 and "--pixel-range" in unscaled.stderr
    assert not (tmp_path / "b").exists()
