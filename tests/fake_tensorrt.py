"""One stand-in for tensorrt and pycuda, for every test of the TensorRT code that runs without a GPU.

The fake engine "computes" logits[b, j] = mean(image[b, j % 3]) + j in numpy,
through fake device memory, so chunking, concatenation, profile choice,
buffer sizing, context push/pop and every checked TensorRT return are
exercised exactly as on a device; `FakeCuda(gpus=..., init=...)` also plays
the machines `tensorrt_available()` must tell apart. tests/gpu/test_tensorrt.py
checks the same code against real TensorRT.
"""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np

from anchor_edge.backends.trt import environment as trt_environment

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

    def __init__(self, gpus: int = 1, init=lambda: None):
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
                return gpus

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
            init=init,
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


def install(monkeypatch, tmp_path: Path, cuda: FakeCuda | None = None) -> tuple[FakeCuda, FakeEngine, Path]:
    """Put the fakes in sys.modules (undone by monkeypatch); returns (cuda, engine, an engine file that loads)."""
    cuda = cuda or FakeCuda()
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
        Runtime=Runtime,
        ILogger=ILogger,
        __version__="10.3.0",
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    )
    package = types.ModuleType("pycuda")
    package.driver = cuda.module
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
    clear_caches()
    path = tmp_path / "downstream.engine"
    path.write_bytes(b"engine")
    return cuda, engine, path


def clear_caches() -> None:
    """tensorrt_available() and the logger bridge cache their answer; each simulated machine needs a fresh one."""
    for cached in (trt_environment.tensorrt_available, trt_environment._logger_bridge):
        cached.cache_clear()
