"""`anchor-edge verify`: the bundle's own check set, rerun on a backend, against the FP32 answers stored at export."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from anchor_edge import BundleError, InputError
from anchor_edge.bundle import load_bundle, sha256_of
from anchor_edge.bundle.check_set import CHECK_FILE, CHECK_IMAGES, verify_bundle
from anchor_edge.bundle.schema import manifest_text
from anchor_edge.cli import main


@pytest.fixture()
def bundle(small_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    return copy


def test_the_export_stores_a_small_check_set_with_fp32_answers(small_bundle):
    check = load_bundle(small_bundle).manifest.check_set
    assert check is not None and check.file == CHECK_FILE and check.images == CHECK_IMAGES
    path = small_bundle / CHECK_FILE
    assert sha256_of(path) == check.sha256 and path.stat().st_size < 5 << 20
    stored = np.load(path)
    assert stored["squares"].shape == (CHECK_IMAGES, 256, 256, 3) and stored["squares"].dtype == np.uint8
    assert stored["probs"].shape == (CHECK_IMAGES, 3, 10) and stored["scores"].sum(1) == pytest.approx(
        np.ones(CHECK_IMAGES), abs=1e-5
    )


def test_fp32_on_onnxruntime_passes_and_is_recorded(bundle, capsys):
    assert main(["verify", str(bundle), "--backend", "onnxruntime"]) == 0
    assert "onnxruntime:cpu: top-1 agreement with FP32 100.0%" in capsys.readouterr().out
    (result,) = load_bundle(bundle).manifest.verified
    assert result.backend == "onnxruntime:cpu" and result.passed and result.top1_agreement == 1.0
    assert max(result.max_abs_diff.values()) < 1e-5
    # a second run for the same backend replaces its entry, another backend adds one
    verify_bundle(bundle, backend="onnxruntime")
    assert len(load_bundle(bundle).manifest.verified) == 1


def test_openvino_f32_passes(bundle):
    pytest.importorskip("openvino")
    result = verify_bundle(bundle, backend="openvino")
    assert result.backend == "openvino:CPU:f32" and result.passed and result.max_abs_diff["anchornet_probs"] < 1e-4
    assert [r.backend for r in load_bundle(bundle).manifest.verified] == ["openvino:CPU:f32"]


def test_a_damaged_model_is_refused(bundle, capsys):
    # Scale the downstream's last weight matrix: the model still loads and runs, its answers change.
    path = bundle / "downstream.onnx"
    model = onnx.load(str(path))
    gemm = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    weights = next(init for init in model.graph.initializer if init.name == gemm.input[1])
    damaged = numpy_helper.to_array(weights).copy()
    damaged[:] = np.random.default_rng(0).standard_normal(damaged.shape).astype(damaged.dtype)
    weights.CopyFrom(numpy_helper.from_array(damaged, weights.name))
    onnx.save(model, str(path))
    manifest = load_bundle(bundle, verify_checksums=False).manifest
    models = type(manifest.models)(
        anchornet=manifest.models.anchornet,
        downstream=type(manifest.models.downstream)(
            **{**manifest.models.downstream.__dict__, "sha256": sha256_of(path)}
        ),
    )
    (bundle / "bundle.json").write_text(manifest_text(type(manifest)(**{**manifest.__dict__, "models": models})))
    assert main(["verify", str(bundle), "--backend", "onnxruntime", "--min-agreement", "0.9"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (below 90%)" in out
    (result,) = load_bundle(bundle).manifest.verified
    assert not result.passed and result.top1_agreement < 0.9


def test_a_tampered_check_file_or_none_at_all_is_a_bundle_error(bundle):
    (bundle / CHECK_FILE).write_bytes(b"tampered")
    with pytest.raises(BundleError, match="does not match its sha256"):
        verify_bundle(bundle)
    manifest = load_bundle(bundle).manifest
    (bundle / "bundle.json").write_text(manifest_text(type(manifest)(**{**manifest.__dict__, "check_set": None})))
    with pytest.raises(BundleError, match="no check set; re-export"):
        verify_bundle(bundle)


@pytest.mark.parametrize("share", [95.0, -0.1, float("nan")])
def test_min_agreement_outside_zero_to_one_is_refused_and_nothing_is_recorded(bundle, share):
    before = (bundle / "bundle.json").read_bytes()
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        verify_bundle(bundle, min_agreement=share, backend="onnxruntime", threads=1)
    assert (bundle / "bundle.json").read_bytes() == before
