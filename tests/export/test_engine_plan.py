"""Engine records: their JSON form and identity, and writing them into bundle.json.

The profile plan is tested with the runtime: tests/anchor_edge/backends/test_trt_profiles.py.
"""

import dataclasses
import json
import os
import sys

import pytest

from anchor_edge.backends.trt.environment import tensorrt_available
from anchor_edge.backends.trt.identity import identity_mismatches, identity_of
from anchor_edge.bundle.choices import Precision
from anchor_edge.bundle.schema import Profile, encode
from export.engines.build import EngineBuildError, build_engine, record_engines
from export.engines.plan import engine_record
from tests.manifests import bundle_json

BUNDLE_META = bundle_json()


def test_engine_record_is_json_with_lists_and_identity():
    profiles = [Profile("image", (1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))]
    record = engine_record(
        file="anchornet.engine",
        sha256="e" * 64,
        onnx_sha256="1" * 64,
        precision=Precision.FP32,
        profiles=profiles,
        tensorrt="10.3.0",
        gpu="Orin",
        compute_capability="8.7",
    )
    assert json.loads(json.dumps(encode(record))) == {
        "file": "anchornet.engine",
        "sha256": "e" * 64,
        "profiles": [{"input": "image", "min": [1, 3, 224, 224], "opt": [1, 3, 224, 224], "max": [8, 3, 224, 224]}],
        "tensorrt": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "onnx_sha256": "1" * 64,
        "precision": "fp32",
    }
    here = {
        "tensorrt": "11.4.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "onnx_sha256": "1" * 64,
        "precision": "fp32",
    }
    assert identity_mismatches(identity_of(record), here) == [
        "engine built with TensorRT 10.3.0, this machine has 11.4.0"
    ]


def records():
    def one(role, onnx_sha):
        return engine_record(
            file=f"{role}.engine",
            sha256="f" * 64,
            onnx_sha256=onnx_sha,
            precision=Precision.FP32,
            profiles=[],
            tensorrt="10.3.0",
            gpu="Orin",
            compute_capability="8.7",
        )

    return {"anchornet": one("anchornet", "1" * 64), "downstream": one("downstream", "2" * 64)}


@pytest.fixture
def bundle_dir(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps(BUNDLE_META, indent=2) + "\n", encoding="utf-8")
    return tmp_path


def test_record_engines_keeps_every_other_field(bundle_dir):
    record_engines(bundle_dir, records())
    written = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))
    assert written["engines"] == encode(records())
    assert {k: v for k, v in written.items() if k != "engines"} == {
        k: v for k, v in BUNDLE_META.items() if k != "engines"
    }


def test_recording_one_engine_keeps_the_other(bundle_dir):
    record_engines(bundle_dir, records())
    rebuilt = dataclasses.replace(records()["downstream"], sha256="9" * 64)
    record_engines(bundle_dir, {"downstream": rebuilt})
    engines = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))["engines"]
    assert engines == encode({"anchornet": records()["anchornet"], "downstream": rebuilt})


def test_engine_from_another_onnx_is_refused(bundle_dir):
    before = (bundle_dir / "bundle.json").read_bytes()
    wrong = {"downstream": dataclasses.replace(records()["downstream"], onnx_sha256="3" * 64)}
    with pytest.raises(ValueError, match="rebuild the engines"):
        record_engines(bundle_dir, wrong)
    assert (bundle_dir / "bundle.json").read_bytes() == before


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_bundle_json_intact(bundle_dir, monkeypatch, failing):
    """A crash after the new text is (partly) written, or at the final rename, must not touch bundle.json."""
    before = (bundle_dir / "bundle.json").read_bytes()

    def crash(*args, **kwargs):
        raise OSError(f"simulated crash in os.{failing}")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="simulated crash"):
        record_engines(bundle_dir, records())
    assert (bundle_dir / "bundle.json").read_bytes() == before
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["bundle.json"]  # no temporary file left behind


def test_record_engines_keeps_the_file_permissions(bundle_dir):
    (bundle_dir / "bundle.json").chmod(0o640)
    record_engines(bundle_dir, records())
    assert (bundle_dir / "bundle.json").stat().st_mode & 0o777 == 0o640


def test_building_without_tensorrt_is_a_clear_error(bundle_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    tensorrt_available.cache_clear()
    try:
        with pytest.raises(EngineBuildError, match="tensorrt not installed.*pip install anchor-edge\\[trt\\]"):
            build_engine(bundle_dir / "downstream.onnx", bundle_dir / "downstream.engine", [])
    finally:
        tensorrt_available.cache_clear()
    assert not (bundle_dir / "downstream.engine").exists()


def test_a_failed_engine_build_leaves_the_recorded_engines_in_place_and_a_whole_one_replaces_them(
    small_bundle, tmp_path, monkeypatch
):
    """The builder is a stand-in (no TensorRT here): the downstream build fails after AnchorNet's succeeded."""
    import shutil
    from pathlib import Path

    from export.engines import build

    bundle = shutil.copytree(small_bundle, tmp_path / "bundle")
    for role in ("anchornet", "downstream"):
        (bundle / f"{role}.engine").write_bytes(b"working " + role.encode())
    identity = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    monkeypatch.setattr(build, "_require_tensorrt", lambda: None)
    monkeypatch.setattr(build, "machine_identity", lambda: identity)
    failing = {"downstream"}

    def stand_in(onnx_path, engine_path, profiles, **_):
        role = Path(onnx_path).stem
        if role in failing:
            raise EngineBuildError(f"TensorRT failed to build {role}.engine")
        Path(engine_path).write_bytes(b"new " + role.encode())

    monkeypatch.setattr(build, "build_engine", stand_in)
    with pytest.raises(EngineBuildError, match="downstream.engine"):
        build.build_engines(bundle)
    assert [(bundle / f"{r}.engine").read_bytes() for r in ("anchornet", "downstream")] == [
        b"working anchornet",
        b"working downstream",
    ]
    assert not [p.name for p in bundle.iterdir() if p.name.endswith(".building")]
    failing.clear()
    records = build.build_engines(bundle)
    assert (bundle / "anchornet.engine").read_bytes() == b"new anchornet" and records["anchornet"].file == (
        "anchornet.engine"
    )
    assert records["downstream"].sha256 == build.sha256_of(bundle / "downstream.engine")


def test_new_engines_drop_the_verify_result_of_the_old_ones_and_keep_the_others(bundle_dir):
    def result(backend):
        return {
            "backend": backend,
            "images": 16,
            "top1_agreement": 1.0,
            "max_abs_diff": {"anchornet_probs": 0.0},
            "min_agreement": 0.95,
            "passed": True,
        }

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    manifest["verified"] = [result("tensorrt"), result("onnxruntime:CPUExecutionProvider")]
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))
    record_engines(bundle_dir, records())
    kept = json.loads((bundle_dir / "bundle.json").read_text())["verified"]
    assert [r["backend"] for r in kept] == ["onnxruntime:CPUExecutionProvider"]
