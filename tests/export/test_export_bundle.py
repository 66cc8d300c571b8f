"""The export stage end to end: a bundle whose files match bundle.json and run with the declared shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from anchor_edge.bundle import sha256_of
from export.bundle.build import export_bundle
from export.graph.verify import VerificationError

REPO = Path(__file__).resolve().parents[2]


def test_sha256_values_match_the_files(small_bundle):
    manifest = json.loads((small_bundle / "bundle.json").read_text())
    for entry in manifest["models"].values():
        assert entry["sha256"] == sha256_of(small_bundle / entry["file"])


def test_models_run_with_the_declared_shapes(small_bundle):
    manifest = json.loads((small_bundle / "bundle.json").read_text())
    sizes = {"batch": 2, "height": None, "width": None}
    for role, entry in manifest["models"].items():
        session = ort.InferenceSession(str(small_bundle / entry["file"]), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [i["name"] for i in entry["inputs"]]
        assert [o.name for o in session.get_outputs()] == [o["name"] for o in entry["outputs"]]
        spatial = entry["patch_sizes"] if role == "downstream" else [224]
        for size in spatial:
            sizes["height"] = sizes["width"] = size
            shape = [sizes.get(d, d) if isinstance(d, str) else d for d in entry["inputs"][0]["shape"]]
            outputs = session.run(None, {"image": np.zeros(shape, np.float32)})
            for out, declared in zip(outputs, entry["outputs"]):
                assert list(out.shape) == [sizes.get(d, d) if isinstance(d, str) else d for d in declared["shape"]]


def test_bundle_records_what_the_runtime_needs(small_bundle):
    manifest = json.loads((small_bundle / "bundle.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["num_classes"] == 10
    assert [(b["name"], b["receptive_field"], b["map_size"]) for b in manifest["branches"]] == [
        ("B63", 63, 21),
        ("B95", 95, 17),
        ("B111", 111, 15),
    ]
    assert manifest["decision"]["vote_min"] == 2 and manifest["lsp"]["preset"] == "accurate"
    assert manifest["decision"]["branch_rule"] == "confident", "a checkpoint that records no rule gets the paper's"
    assert manifest["decision"]["heatmap"] == "class", "and the paper's heatmap, F[class]"
    assert manifest["export"]["opset"] >= 17 and manifest["trained"] is True
    for entry in manifest["models"].values():
        report = entry["verification"]  # as stored in bundle.json
        assert report["images"] >= 9 and report["top1_agreement"] == 1.0
        assert max(report["max_abs_diff"].values()) < 1e-3


def test_efficientnet_lite0_keeps_its_top1_on_onnx_runtime(tmp_path):
    from export.graph.onnx_export import export_downstream
    from export.graph.verify import photo_crops, verify
    from export.models.downstream import load_downstream

    net = load_downstream("efficientnet_lite0")
    export_downstream(net.module, tmp_path / "lite0.onnx")
    report = verify(
        net.module,
        tmp_path / "lite0.onnx",
        photo_crops(),
        mean=net.mean,
        std=net.std,
        sizes=[63, 95, 111, 224],
        top1_output="logits",
        tolerance=1e-3,
    )
    assert report.top1_agreement == 1.0
    assert report.max_abs_diff["logits"] < 1e-3


def test_an_imagenet_backbone_under_a_new_random_head_makes_an_untrained_bundle(small_models, tmp_path, caplog):
    """Its classes mean nothing yet: `trained` false, and the export says so, as for a random network."""
    _, anchornet_ckpt, _ = small_models
    out = export_bundle(anchornet_ckpt, "efficientnet_lite0", tmp_path / "bundle")
    assert json.loads((out / "bundle.json").read_text())["trained"] is False
    assert "UNTRAINED WEIGHTS: downstream efficientnet_lite0 is imagenet-backbone+random-head" in caplog.text


def test_a_failed_verification_leaves_the_previous_bundle_untouched(small_models, small_bundle, tmp_path):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(small_bundle, out)
    before = (out / "bundle.json").read_bytes()
    _, anchornet_ckpt, downstream_ckpt = small_models
    with pytest.raises(VerificationError, match="differs from PyTorch"):
        export_bundle(anchornet_ckpt, f"resnet18:{downstream_ckpt}", out, tolerance=1e-15)
    assert (out / "bundle.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_cli_exit_codes():
    script = str(REPO / "export" / "to_trt.py")
    usage = subprocess.run([sys.executable, script, "--bogus"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "unrecognized arguments" in usage.stderr
    failure = subprocess.run(
        [sys.executable, script, "--downstream", "no_such_net", "--out", "/nonexistent/x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failure.returncode == 1 and failure.stderr.startswith("export failed: unknown downstream spec")


def test_an_export_flag_beside_bundle_is_refused_rather_than_dropped(small_bundle, capsys):
    from export import cli

    assert cli.main(["--bundle", str(small_bundle), "--check-dir", "photos", "--precision", "int8"]) == 2
    assert "--check-dir, --precision apply to an export, not to --bundle DIR" in capsys.readouterr().err
    assert cli.main(["--bundle", str(small_bundle), "--preset", "visual"]) == 2
    assert "--preset applies to an export" in capsys.readouterr().err


def test_precision_flags_for_a_conversion_the_export_does_not_make_are_refused_before_it(tmp_path, capsys):
    from export import cli

    out = ["--out", str(tmp_path / "b")]
    assert cli.main([*out, "--min-agreement", "0.9"]) == 2
    assert (
        "--min-agreement needs a model converted to fp16 or int8 (--precision), and this export keeps anchornet fp32"
        in (capsys.readouterr().err)
    )
    assert cli.main([*out, "--precision", "fp16", "--calibration-dir", str(tmp_path), "--int8-target", "tensorrt"]) == 2
    assert "--int8-target needs an int8 model; --calibration-dir needs an int8 model" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_engines_for_a_bundle_quantized_for_the_cpu_say_to_re_export_it(small_bundle, tmp_path, capsys):
    import shutil

    from export import cli

    bundle = shutil.copytree(small_bundle, tmp_path / "int8cpu")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["models"]["downstream"]["int8"] = {  # as an --int8-target cpu export records it
        "format": "QDQ",
        "target": "cpu",
        "activations": "uint8",
        "weights": "int8",
        "calibration_method": "MinMax",
        "unquantized_op_types": [],
        "float_layers": [],
        "float_output_ops": [],
        "seven_bit_layers": [],
    }
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    assert cli.main(["--bundle", str(bundle)]) == 1
    error = capsys.readouterr().err
    assert "models.downstream was quantized for ONNX Runtime's CPU (uint8 activations)" in error
    assert "re-export with --precision downstream=int8 --int8-target tensorrt" in error


def test_importing_the_runtime_never_imports_torch():
    code = "import anchor_edge, sys; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
