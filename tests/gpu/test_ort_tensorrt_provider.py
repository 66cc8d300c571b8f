"""ONNX Runtime's TensorRT provider, set up from the bundle, agrees with its CPU provider and caches in the bundle.

Needs an onnxruntime with TensorrtExecutionProvider, and tensorrt, pycuda and a
CUDA GPU (the engine cache is keyed by the TensorRT version and GPU they
report); elsewhere every test is skipped with the reason. The provider's
options themselves are tested without a GPU in
tests/anchor_edge/backends/test_ort_tensorrt.py.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.backends.ort_tensorrt import CACHE_FOLDER
from anchor_edge.backends.trt.environment import tensorrt_available


def _why_not() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime not installed"
    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no TensorrtExecutionProvider (pip install onnxruntime-gpu and TensorRT)"
    available, reason = tensorrt_available()
    return "" if available else reason


WHY_NOT = _why_not()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(WHY_NOT), reason=f"ONNX Runtime's TensorRT provider: {WHY_NOT}")]
#: Largest |TensorRT provider - CPU provider| on the fp32 bundle's probabilities.
TOLERANCE = 1e-3


@pytest.fixture()
def bundle_root(small_bundle, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(small_bundle, root)
    return root


def test_pipeline_on_the_tensorrt_provider_matches_the_cpu_and_reuses_its_cache(bundle_root):
    """Ten images: above AnchorNet's profile maximum of 8, so the runner splits the batch."""
    images = list(np.random.default_rng(0).integers(0, 256, (10, 256, 256, 3), dtype=np.uint8))
    with Pipeline.from_bundle(bundle_root, backend="onnxruntime", providers="cpu") as on_cpu:
        expected = on_cpu.predict_batch(images)
    for _ in range(2):  # the second opening loads the engines the first one cached
        with Pipeline.from_bundle(bundle_root, backend="onnxruntime", providers=["tensorrt", "cuda"]) as on_gpu:
            assert on_gpu.downstream.providers == ["tensorrt", "cuda"]
            got = on_gpu.predict_batch(images)
        for a, b in zip(got, expected):
            assert (a.class_id, a.branch) == (b.class_id, b.branch)
            np.testing.assert_allclose(a.patch_probs, b.patch_probs, atol=TOLERANCE)
    caches = sorted(path.name for path in (bundle_root / CACHE_FOLDER).iterdir())
    assert [name.split("_")[0] for name in caches] == ["anchornet", "downstream"]
    assert all(any((bundle_root / CACHE_FOLDER / name).iterdir()) for name in caches)
