"""`python export/to_trt.py --bundle DIR` on a device: engines from the bundle's ONNX files alone, torch unimportable.

Runs the real script in a subprocess whose PYTHONPATH starts with
tests/export/fake_device: a fake TensorRT builder and pycuda (one "Orin",
TensorRT version from FAKE_TENSORRT) and a torch that refuses to import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anchor_edge.bundle import load_bundle, sha256_of

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fake_device"


def to_trt(*args: object, tensorrt: str = "10.3.0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKES), str(REPO)]), "FAKE_TENSORRT": tensorrt}
    command = [sys.executable, str(REPO / "export" / "to_trt.py"), *(str(a) for a in args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def bundle(small_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    return copy


def test_the_fake_device_really_has_no_torch():
    env = {**os.environ, "PYTHONPATH": str(FAKES)}
    result = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "torch is not installed on this device" in result.stderr


def test_engines_are_built_from_the_bundle_alone_and_recorded(bundle, tmp_path):
    before = load_bundle(bundle)
    result = to_trt("--bundle", bundle, "--max-batch", "4", "--max-patches", "8", "--timing-cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "built TensorRT engines anchornet.engine, downstream.engine" in result.stdout
    after = load_bundle(bundle)
    for role in ("anchornet", "downstream"):
        record = after.manifest.engines[role]
        plan = json.loads((bundle / record.file).read_text())
        assert plan["source"] == f"{role}.onnx" and sha256_of(bundle / record.file) == record.sha256
        assert (record.tensorrt, record.gpu, record.compute_capability) == ("10.3.0", "Orin", "8.7")
        assert record.onnx_sha256 == before.manifest.models[role].sha256
    downstream = after.manifest.engines.downstream
    assert [p.max[0] for p in downstream.profiles] == [8, 8, 8, 4]  # patches per size, then images
    assert after.manifest.models == before.manifest.models  # the ONNX models are untouched


def test_matching_engines_are_kept_and_stale_ones_need_rebuild(bundle, tmp_path):
    cache = tmp_path / "cache"
    assert to_trt("--bundle", bundle, "--timing-cache", cache).returncode == 0
    again = to_trt("--bundle", bundle, "--timing-cache", cache)
    assert again.returncode == 0 and "fit this machine; nothing to build" in again.stdout
    stale = to_trt("--bundle", bundle, "--timing-cache", cache, tensorrt="11.4.0")
    assert stale.returncode == 1 and "10.3.0" in stale.stderr and "--rebuild" in stale.stderr
    rebuilt = to_trt("--bundle", bundle, "--timing-cache", cache, "--rebuild", tensorrt="11.4.0")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert load_bundle(bundle).manifest.engines.anchornet.tensorrt == "11.4.0"


def test_engines_built_for_other_sizes_are_stale_when_sizes_are_asked_for(bundle, tmp_path):
    cache = tmp_path / "cache"
    assert to_trt("--bundle", bundle, "--timing-cache", cache).returncode == 0  # max batch 8, 32 patches
    same = to_trt("--bundle", bundle, "--timing-cache", cache, "--max-batch", "8", "--workspace-gib", "1")
    assert same.returncode == 0
    assert "nothing to build (--timing-cache, --workspace-gib: used only when building)" in same.stdout
    other = to_trt("--bundle", bundle, "--timing-cache", cache, "--max-batch", "4")
    assert other.returncode == 1 and "other sizes than --max-batch 4 --max-patches 32" in other.stderr
    rebuilt = to_trt("--bundle", bundle, "--timing-cache", cache, "--max-batch", "4", "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert load_bundle(bundle).manifest.engines.anchornet.profiles[0].max[0] == 4


def test_rebuild_without_a_bundle_is_a_usage_error():
    result = to_trt("--rebuild")
    assert result.returncode == 2 and "--rebuild replaces the engines of --bundle DIR" in result.stderr


def test_a_missing_bundle_is_exit_code_one(tmp_path):
    result = to_trt("--bundle", tmp_path / "none")
    assert result.returncode == 1 and result.stderr.startswith("engine build failed:")
