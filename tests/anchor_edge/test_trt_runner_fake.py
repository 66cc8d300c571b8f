"""TrtRunner's control flow, run against a stand-in for tensorrt and pycuda.

No GPU is needed: the fake engine "computes" logits[b, j] = mean(image[b, j % 3]) + j
in numpy, through fake device memory, so chunking, concatenation, profile
choice, buffer sizing, context push/pop and every checked TensorRT return
are exercised exactly as on a device. tests/gpu/test_tensorrt.py checks the
same runner against real TensorRT.
"""
from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from anchor_edge.backends import trt_environment
from anchor_edge.backends.trt import TrtRunner
from anchor_edge.errors import BackendError

CLASSES = 10
# (min, opt, max) input shapes per profile, as export/engines/plan.py plans the downstream.
PROFILES = [((1, 3, s, s), (8, 3, s, s), (32, 3, s, s)) for s in (63, 95, 111)] + [
    ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))
]


def reference_logits(images: np.ndarray) -> np.ndarray:
    channel_means = images.mean(axis=(2, 3))  # (batch, 3)
    return np.stack([channel_means[:, j % 3] + j for j in range(CLASSES)], axis=1).astype(np.float32)


class FakeCuda:
    """Just enough of pycuda.driver: device memory is bytearrays addressed by id()."""

    def __init__(self):
        self.allocations = {}
        self.freed = []
        self.pinned = []
        self.depth = threading.local()
        self.retained = 0
        self.detached = 0
        driver = self

        class Context:
            def push(self):
                driver.depth.value = getattr(driver.depth, "value", 0) + 1

            def pop(self):
                driver.depth.value -= 1

            def detach(self):
                driver.detached += 1

        class Device:
            def __init__(self, ordinal):
                pass

            @staticmethod
            def count():
                return 1

            def name(self):
                return "Fake GPU"

            def compute_capability(self):
                return (8, 7)

            def retain_primary_context(self):
                driver.retained += 1
                return Context()

        class Allocation(bytearray):
            def __int__(self):
                return id(self)

            def free(self):
                driver.freed.append(len(self))

        class Pinned(bytearray):
            def free(self):
                driver.freed.append(("pinned", len(self)))

        class Event:
            def record(self, stream):
                return self

            def synchronize(self):
                return self

            def time_since(self, other):
                return 0.5

        self.module = types.SimpleNamespace(
            init=lambda: None,
            Device=Device,
            Stream=lambda: types.SimpleNamespace(handle=1, synchronize=lambda: None),
            Event=Event,
            mem_alloc=self._allocator(Allocation),
            pagelocked_empty=self._pinned_allocator(Pinned),
            memcpy_htod_async=self._htod,
            memcpy_dtoh_async=self._dtoh,
        )

    def _allocator(self, kind):
        def mem_alloc(nbytes):
            allocation = kind(nbytes)
            self.allocations[id(allocation)] = allocation
            return allocation

        return mem_alloc

    def _pinned_allocator(self, kind):
        def pagelocked_empty(count, dtype):
            array = np.ndarray((count,), dtype, buffer=kind(count * np.dtype(dtype).itemsize))
            self.pinned.append(array)
            return array

        return pagelocked_empty

    def _htod(self, device, host, stream):
        raw = np.ascontiguousarray(host).tobytes()
        device[: len(raw)] = raw

    def _dtoh(self, host, device, stream):
        host[...] = np.frombuffer(bytes(device[: host.nbytes]), host.dtype).reshape(host.shape)

    def depth_here(self):
        return getattr(self.depth, "value", 0)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.profile, self.shape, self.addresses = engine, 0, None, {}

    def set_optimization_profile_async(self, profile, stream):
        self.profile = profile
        return True

    def set_input_shape(self, name, shape):
        self.engine.shapes_set.append(tuple(shape))
        low, _, high = PROFILES[self.profile]
        if self.engine.refuse_shapes or not all(lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shape if name == "image" else (self.shape[0], CLASSES)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream):
        if self.engine.fail_execution:
            return False
        memory = self.engine.cuda.allocations
        count = int(np.prod(self.shape))
        images = np.frombuffer(bytes(memory[self.addresses["image"]][: count * 4]), np.float32).reshape(self.shape)
        logits = reference_logits(images).tobytes()
        memory[self.addresses["logits"]][: len(logits)] = logits
        return True


class FakeEngine:
    num_io_tensors = 2
    num_optimization_profiles = len(PROFILES)

    def __init__(self, cuda):
        self.cuda, self.shapes_set = cuda, []
        self.refuse_shapes = self.fail_execution = False

    def get_tensor_name(self, index):
        return ["image", "logits"][index]

    def get_tensor_mode(self, name):
        return "in" if name == "image" else "out"

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name="FLOAT")

    def get_tensor_shape(self, name):
        return (-1, 3, -1, -1) if name == "image" else (-1, CLASSES)

    def get_tensor_profile_shape(self, name, profile):
        return list(PROFILES[profile])

    def create_execution_context(self):
        return FakeContext(self)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Install the fakes; returns (cuda, engine, engine path)."""
    cuda = FakeCuda()
    engine = FakeEngine(cuda)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return engine if plan == b"engine" else None

    class ILogger:
        def __init__(self):
            pass

    fake_trt = types.SimpleNamespace(
        Runtime=Runtime, ILogger=ILogger, __version__="10.3.0",
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    )
    package = types.ModuleType("pycuda")
    package.driver = cuda.module
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
    for cached in (trt_environment.tensorrt_available, trt_environment._logger_bridge):
        cached.cache_clear()
    path = tmp_path / "downstream.engine"
    path.write_bytes(b"engine")
    yield cuda, engine, path
    for cached in (trt_environment.tensorrt_available, trt_environment._logger_bridge):
        cached.cache_clear()


def images(batch, size, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("pinned", [True, False])
@pytest.mark.parametrize("size, batch", [(63, 1), (95, 32), (111, 70), (224, 8), (224, 19)])
def test_outputs_match_the_reference_across_chunks(fake, pinned, size, batch):
    cuda, engine, path = fake
    with TrtRunner(path, pinned_outputs=pinned) as runner:
        feeds = images(batch, size)
        logits = runner.run({"image": feeds})["logits"]
    np.testing.assert_allclose(logits, reference_logits(feeds), rtol=1e-6, atol=1e-6)
    assert cuda.depth_here() == 0


def test_seventy_patches_run_as_32_32_6(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        profile_setup = len(engine.shapes_set)  # load time sets every profile's maximum once
        runner.run({"image": images(70, 111)})
    assert [shape[0] for shape in engine.shapes_set[profile_setup:]] == [32, 32, 6]
    assert {shape[2] for shape in engine.shapes_set[profile_setup:]} == {111}


def test_timings_are_summed_over_chunks(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        runner.run({"image": images(70, 63)})  # 3 chunks, each fake event interval 0.5 ms
        assert runner.last_timings == {"h2d_ms": 1.5, "compute_ms": 1.5, "d2h_ms": 1.5}


def test_buffers_sized_for_the_largest_profile_and_allocated_once(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        # image: max over profiles of batch*3*s*s*4 bytes = 8*3*224*224*4 (224 profile) = 4,816,896
        # (the 111 profile is 32*3*111*111*4 = 4,731,264); logits: 32*10*4 = 1,280.
        assert sorted(len(a) for a in cuda.allocations.values()) == [1_280, 4_816_896]
        for size in (63, 95, 111, 224, 63):
            runner.run({"image": images(3, size)})
        assert len(cuda.allocations) == 2


def test_returned_arrays_do_not_alias_the_pinned_buffers(fake):
    cuda, engine, path = fake
    with TrtRunner(path, pinned_outputs=True) as runner:
        first = runner.run({"image": images(2, 63, seed=1)})["logits"].copy()
        kept = runner.run({"image": images(2, 63, seed=1)})["logits"]
        runner.run({"image": images(2, 63, seed=2)})
    np.testing.assert_array_equal(kept, first)


def test_specs_name_the_dynamic_axes(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        assert [tuple(s) for s in runner.inputs] == [("image", ("batch", 3, "dim2", "dim3"), "float32")]
        assert [tuple(s) for s in runner.outputs] == [("logits", ("batch", CLASSES), "float32")]


def test_empty_batch(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        assert runner.run({"image": images(0, 95)})["logits"].shape == (0, CLASSES)


def test_unplanned_size_and_wrong_dtype_are_refused(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        with pytest.raises(BackendError, match=r"downstream\.engine input 'image'.*\(1, 3, 100, 100\)"):
            runner.run({"image": images(1, 100)})
        with pytest.raises(BackendError, match="takes float32, got float64"):
            runner.run({"image": images(1, 63).astype(np.float64)})
    assert cuda.depth_here() == 0


def test_false_from_set_input_shape_names_engine_and_tensor(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        engine.refuse_shapes = True
        with pytest.raises(BackendError, match=r"set input 'image' to shape \(2, 3, 63, 63\) for .*downstream\.engine"):
            runner.run({"image": images(2, 63)})
        assert cuda.depth_here() == 0  # the context was popped despite the error


def test_false_from_execute_is_an_error(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        engine.fail_execution = True
        with pytest.raises(BackendError, match=r"failed to run on a batch of shape \(2, 3, 95, 95\)"):
            runner.run({"image": images(2, 95)})
    assert cuda.depth_here() == 0


def test_undeserializable_engine_releases_the_cuda_context(fake):
    cuda, engine, path = fake
    path.write_bytes(b"garbage")
    with pytest.raises(BackendError, match="cannot deserialize.*rebuild it on this machine"):
        TrtRunner(path)
    assert (cuda.retained, cuda.detached, cuda.depth_here()) == (1, 1, 0)


def test_close_frees_every_buffer_once_and_blocks_further_runs(fake):
    cuda, engine, path = fake
    runner = TrtRunner(path, pinned_outputs=True)
    runner.close()
    runner.close()
    assert sorted(map(str, cuda.freed)) == sorted(map(str, [1_280, 4_816_896, ("pinned", 1_280)]))
    assert (cuda.retained, cuda.detached) == (1, 1)
    with pytest.raises(BackendError, match="closed"):
        runner.run({"image": images(1, 63)})


def test_concurrent_calls_each_push_the_context_in_their_own_thread(fake):
    cuda, engine, path = fake
    results, errors = {}, []
    with TrtRunner(path) as runner:

        def work(size):
            try:
                feeds = images(5, size, seed=size)
                results[size] = (runner.run({"image": feeds})["logits"], reference_logits(feeds), cuda.depth_here())
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(size,)) for size in (63, 95, 111, 224)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for logits, expected, depth_after in results.values():
        np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
        assert depth_after == 0
