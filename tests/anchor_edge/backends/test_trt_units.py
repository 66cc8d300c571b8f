"""The GPU-free parts of the TensorRT backend: chunking, buffer sizes, profile choice, availability."""

import sys
import types

import numpy as np
import pytest

from anchor_edge.backends.trt import environment as trt_environment
from anchor_edge.backends.trt.runner import (
    TrtRunner,
    batch_slices,
    buffer_nbytes,
    choose_profile,
    numpy_dtype,
    tensorrt_available,
)
from anchor_edge.errors import BackendError
from tests.fake_tensorrt import FakeCuda, install

# The downstream engine's profiles as export/engines/plan.py plans them (max_patches 32, max_batch 8).
DOWNSTREAM_RANGES = [
    ((1, 3, 63, 63), (32, 3, 63, 63)),
    ((1, 3, 95, 95), (32, 3, 95, 95)),
    ((1, 3, 111, 111), (32, 3, 111, 111)),
    ((1, 3, 224, 224), (8, 3, 224, 224)),
]


def bounds(slices):
    return [(s.start, s.stop) for s in slices]


def test_seventy_items_in_chunks_of_32():
    assert bounds(batch_slices(70, 32)) == [(0, 32), (32, 64), (64, 70)]


@pytest.mark.parametrize(
    "batch, max_batch, expected",
    [
        (64, 32, [(0, 32), (32, 64)]),  # exact multiple: no empty tail
        (5, 32, [(0, 5)]),
        (1, 1, [(0, 1)]),
        (3, 1, [(0, 1), (1, 2), (2, 3)]),
        (0, 8, []),
    ],
)
def test_chunk_bounds(batch, max_batch, expected):
    assert bounds(batch_slices(batch, max_batch)) == expected


@pytest.mark.parametrize("batch, max_batch", [(70, 32), (100, 7), (33, 33), (34, 33)])
def test_chunks_cover_the_batch_in_order_with_divmod_sizes(batch, max_batch):
    full, rest = divmod(batch, max_batch)
    sizes = [s.stop - s.start for s in batch_slices(batch, max_batch)]
    assert sizes == [max_batch] * full + ([rest] if rest else [])
    items = np.arange(batch)
    assert np.array_equal(np.concatenate([items[s] for s in batch_slices(batch, max_batch)]), items)


def test_chunk_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        batch_slices(4, 0)


@pytest.mark.parametrize(
    "shape, dtype, expected",
    [
        ((32, 3, 224, 224), "float32", 19_267_584),  # 224*224 = 50176; *3 = 150528; *32 = 4816896; *4 bytes
        ((16, 10), "float16", 320),  # 160 halves of 2 bytes
        ((8, 10, 21, 21), np.float32, 141_120),  # 441 * 10 * 8 = 35280 floats
        ((4, 1000), np.int64, 32_000),
        ((0, 10), "float32", 0),
    ],
)
def test_buffer_sizes(shape, dtype, expected):
    assert buffer_nbytes(shape, dtype) == expected


def test_unresolved_dimension_has_no_size():
    with pytest.raises(ValueError, match="negative"):
        buffer_nbytes((-1, 3, 224, 224), "float32")


def test_tensorrt_types_map_to_numpy():
    assert numpy_dtype("FLOAT") == np.float32
    assert numpy_dtype("HALF") == np.float16
    assert numpy_dtype("INT8") == np.int8
    with pytest.raises(BackendError, match="BF16"):
        numpy_dtype("BF16")


@pytest.mark.parametrize("size, profile", [(63, 0), (95, 1), (111, 2), (224, 3)])
def test_profile_chosen_by_spatial_size(size, profile):
    assert choose_profile(DOWNSTREAM_RANGES, (2, 3, size, size), what="downstream.engine input 'image'") == profile


def test_batch_above_the_profile_maximum_still_chooses_by_size():
    """The batch axis is not part of the choice: the runner chunks it."""
    assert choose_profile(DOWNSTREAM_RANGES, (70, 3, 95, 95), what="x") == 1


@pytest.mark.parametrize("shape", [(2, 3, 100, 100), (2, 3, 63, 95), (2, 1, 63, 63), (3, 63, 63)])
def test_no_profile_for_the_shape_is_an_error_listing_the_accepted_sizes(shape):
    with pytest.raises(BackendError) as caught:
        choose_profile(DOWNSTREAM_RANGES, shape, what="downstream.engine input 'image'")
    message = str(caught.value)
    assert "downstream.engine input 'image'" in message and str(tuple(shape)) in message
    assert "3x63x63" in message and "3x224x224" in message


def test_a_ranged_profile_takes_any_size_inside_it():
    ranges = [((1, 3, 32, 32), (4, 3, 128, 128)), ((1, 3, 224, 224), (4, 3, 224, 224))]
    assert choose_profile(ranges, (1, 3, 100, 64), what="x") == 0
    assert choose_profile(ranges, (1, 3, 224, 224), what="x") == 1
    with pytest.raises(BackendError, match="3x32..128x32..128"):
        choose_profile(ranges, (1, 3, 150, 150), what="x")


@pytest.fixture
def fresh_probe():
    """tensorrt_available() caches its answer; each simulated machine needs a fresh probe."""
    tensorrt_available.cache_clear()
    yield
    tensorrt_available.cache_clear()


def test_this_machine_reports_the_reason_its_environment_gives(fresh_probe):
    import importlib.util

    available, reason = tensorrt_available()
    spec = importlib.util.find_spec("tensorrt")
    has_runtime = spec is not None and hasattr(__import__("tensorrt"), "Runtime")
    if not has_runtime:  # CI installs only tensorrt-stubs (or nothing): that must be the reason given
        assert not available
        assert reason in ("tensorrt not installed", "tensorrt not installed (only its type stubs were found)")
    else:
        assert available == (reason == "")


def test_without_tensorrt(fresh_probe, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    assert tensorrt_available() == (False, "tensorrt not installed")


def test_type_stubs_alone_are_not_tensorrt(fresh_probe, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    available, reason = tensorrt_available()
    assert not available and reason.startswith("tensorrt not installed")


def test_without_pycuda(fresh_probe, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(Runtime=object))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    assert tensorrt_available() == (False, "pycuda not installed")


def test_without_a_cuda_driver(fresh_probe, monkeypatch, tmp_path):
    def init():
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    install(monkeypatch, tmp_path, FakeCuda(gpus=0, init=init))
    available, reason = tensorrt_available()
    assert not available and reason.startswith("no CUDA GPU") and "cuInit failed" in reason


def test_without_a_gpu(fresh_probe, monkeypatch, tmp_path):
    install(monkeypatch, tmp_path, FakeCuda(gpus=0))
    assert tensorrt_available() == (False, "no CUDA GPU")


def test_with_tensorrt_and_a_gpu(fresh_probe, monkeypatch, tmp_path):
    install(monkeypatch, tmp_path, FakeCuda(gpus=1))
    assert tensorrt_available() == (True, "")


def test_runner_without_tensorrt_says_how_to_install(fresh_probe, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError) as caught:
        TrtRunner(tmp_path / "downstream.engine")
    message = str(caught.value)
    assert "tensorrt not installed" in message
    assert "pip install anchor-edge[trt]" in message and "--system-site-packages" in message


def test_machine_identity_without_tensorrt_is_a_backend_error(fresh_probe, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    trt_environment.machine_identity.cache_clear()
    with pytest.raises(BackendError, match="tensorrt not installed"):
        trt_environment.machine_identity()
