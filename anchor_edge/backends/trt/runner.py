"""TensorRT backend: one serialized engine, one execution context per optimization profile.

The downstream engine has one profile per input size (63, 95, 111, 224; see
`engine_identity` for the bundle record), so a call picks the profile whose
spatial range holds the input; a batch larger than the profile's maximum is
split into chunks and the outputs concatenated. Everything is allocated once
at load time: the contexts, one CUDA stream, four CUDA events, one device
buffer per tensor sized for the largest profile (calls are serialised by a
lock, so all contexts share them) and, optionally, pinned host buffers for
the outputs.

pycuda's CUDA context is current per thread, so every call pushes the
device's primary context (the one TensorRT's runtime API also uses) in the
calling thread and pops it afterwards. Only the name-based tensor API of
TensorRT 10 and 11 is used; every boolean TensorRT returns is checked.
tensorrt and pycuda are imported lazily: importing this module never fails.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from anchor_edge.backends.base import Runner, TensorSpec
from anchor_edge.backends.trt.environment import (
    import_cuda,
    machine_identity,
    take_tensorrt_errors,
    tensorrt_available,
    tensorrt_logger,
)
from anchor_edge.backends.trt.identity import engine_entry, engine_identity, identity_mismatches, identity_of
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.load import Bundle, sha256_of
from anchor_edge.errors import BackendError, BundleError, InputError

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "TrtRunner",
    "batch_slices",
    "buffer_nbytes",
    "choose_profile",
    "engine_mismatches",
    "machine_identity",
    "numpy_dtype",
    "tensorrt_available",
]

log = logging.getLogger("anchor_edge")

# TensorRT DataType names -> numpy; other types (BF16, FP8, INT4) have no numpy equivalent.
_NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def batch_slices(batch: int, max_batch: int) -> list[slice]:
    """Split `batch` items into consecutive slices of at most `max_batch`.

    Example:
        >>> [(s.start, s.stop) for s in batch_slices(70, 32)]
        [(0, 32), (32, 64), (64, 70)]
    """
    if max_batch < 1:
        raise InputError(f"max_batch must be >= 1, got {max_batch}")
    return [slice(start, min(start + max_batch, batch)) for start in range(0, batch, max_batch)]


def buffer_nbytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of a dense tensor of `shape` and numpy `dtype`.

    Example:
        >>> buffer_nbytes((2, 3, 224, 224), "float32")
        1204224
    """
    if any(dim < 0 for dim in shape):
        raise InputError(f"shape {tuple(shape)} has an unresolved (negative) dimension")
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def numpy_dtype(tensorrt_type_name: str) -> np.dtype:
    """The numpy dtype of a TensorRT DataType, by its name ("FLOAT" -> float32)."""
    if tensorrt_type_name not in _NUMPY_DTYPES:
        raise BackendError(
            f"TensorRT type {tensorrt_type_name} has no numpy equivalent; "
            "export the model with float32 inputs and outputs"
        )
    return np.dtype(_NUMPY_DTYPES[tensorrt_type_name])


def choose_profile(ranges: Sequence[tuple[Sequence[int], Sequence[int]]], shape: Sequence[int], *, what: str) -> int:
    """Index of the first profile whose (min, max) shapes hold `shape` in every non-batch axis.

    The batch axis is left out: batches above a profile's maximum are chunked.

    Args:
        ranges: per profile, its (min shape, max shape) for the input.
        shape: the input's shape.
        what: the engine and tensor, for the error message.

    Raises:
        BackendError: when no profile takes the shape, listing the shapes the profiles take.

    Example:
        >>> choose_profile([((1, 3, 63, 63), (8, 3, 63, 63)), ((1, 3, 95, 95), (8, 3, 95, 95))],
        ...                (20, 3, 95, 95), what="downstream.engine input 'image'")
        1
    """
    for index, (low, high) in enumerate(ranges):
        if len(low) == len(shape) and all(lo <= dim <= hi for lo, dim, hi in zip(low[1:], shape[1:], high[1:])):
            return index
    accepted = ", ".join("x".join(_span(lo, hi) for lo, hi in zip(low[1:], high[1:])) for low, high in ranges)
    raise BackendError(
        f"{what} has no optimization profile for shape {tuple(shape)}; its profiles take {accepted} "
        "(after the batch axis): resize the input, or rebuild the engine with a profile for this size"
    )


def engine_mismatches(bundle: Bundle, role: str) -> list[str]:
    """Why the bundle's `role` engine cannot run here: identity mismatches (empty when it can).

    Compares the bundle.json engine record with this machine (TensorRT
    version, GPU, compute capability) and with the bundle's ONNX model
    (sha256, precision). Rebuilding is the caller's decision.

    Raises:
        BundleError: when the bundle has no engine record for `role`.
        BackendError: when TensorRT or the GPU is missing.
    """
    checked = _role(role)
    model = bundle.manifest.models[checked]
    recorded = engine_entry(bundle.manifest, checked, source=str(bundle.manifest_path))
    current = engine_identity(**machine_identity(), onnx_sha256=model.sha256, precision=str(model.precision))
    return identity_mismatches(identity_of(recorded), current)


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InputError(f"role must be one of {[r.value for r in Role]}, got {role!r}") from None


class TrtRunner(Runner):
    """One TensorRT engine on CUDA device 0.

    Args:
        engine_path: the serialized engine (.engine).
        pinned_outputs: copy outputs through page-locked host buffers (faster
            device-to-host copies; costs host memory of one maximal output).

    Attributes:
        last_timings: milliseconds of this thread's most recent call, measured
            with CUDA events on the stream and summed over its chunks:
            {"h2d_ms": ..., "compute_ms": ..., "d2h_ms": ...}.

    Example:
        >>> with TrtRunner.from_bundle(load_bundle("bundles/default"), "downstream") as runner:
        ...     logits = runner.run({"image": patches})["logits"]
        ...     runner.last_timings["compute_ms"]
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, *, pinned_outputs: bool = True) -> None:
        super().__init__(Path(engine_path).name)
        self._cuda = import_cuda()
        self._lock = threading.Lock()
        self._path = Path(engine_path)
        self._device_buffers: dict[str, Any] = {}
        self._host_buffers: dict[str, Any] = {}  # pycuda page-locked arrays
        self._contexts: list[trt.IExecutionContext] = []
        self._engine: trt.ICudaEngine | None = None
        self._runtime: trt.Runtime | None = None
        self._cuda_context: Any = self._cuda.Device(0).retain_primary_context()
        self._cuda_context.push()
        try:
            self._load(pinned_outputs)
        except BaseException:
            self._release()
            self._cuda_context.pop()
            self._cuda_context.detach()
            self._cuda_context = None
            raise
        self._cuda_context.pop()

    @classmethod
    def from_bundle(cls, bundle: Bundle, role: str, *, pinned_outputs: bool = True) -> "TrtRunner":
        """Load the bundle's engine for `role` ("anchornet" or "downstream") after checking it fits this machine.

        Raises:
            BundleError: no engine recorded, or the engine file is missing or fails its sha256.
            BackendError: TensorRT/GPU missing, or the engine was built for another
                TensorRT, GPU, ONNX model or precision (the message names both sides).
        """
        mismatches = engine_mismatches(bundle, role)
        if mismatches:
            raise BackendError(
                f"the {role} TensorRT engine in {bundle.root} does not fit: "
                + "; ".join(mismatches)
                + ". Rebuild the engines on this machine, or use the onnxruntime backend"
            )
        entry = engine_entry(bundle.manifest, _role(role), source=str(bundle.manifest_path))
        path = bundle.root / entry.file
        if path.is_symlink() or not path.is_file():
            raise BundleError(f"{path} (engines.{role}.file) is missing or a link; rebuild the engines")
        if sha256_of(path) != entry.sha256:
            raise BundleError(f"{path} does not match its sha256 in bundle.json; rebuild the engines")
        return cls(path, pinned_outputs=pinned_outputs)

    def _load(self, pinned_outputs: bool) -> None:
        import tensorrt as trt_module

        engine = self._deserialize()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._dtypes = {name: numpy_dtype(engine.get_tensor_dtype(name).name) for name in names}
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self.inputs = [self._spec(engine, n) for n in names if modes[n] == trt_module.TensorIOMode.INPUT]
        self.outputs = [self._spec(engine, n) for n in names if modes[n] == trt_module.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1:
            raise BackendError(
                f"{self.model_name} has inputs {[s.name for s in self.inputs]}; "
                "TrtRunner runs single-input engines (an NCHW image)"
            )
        self._input = self.inputs[0].name
        self._ranges = []
        for profile in range(engine.num_optimization_profiles):
            min_shape, _opt_shape, max_shape = engine.get_tensor_profile_shape(self._input, profile)
            self._ranges.append((_dims(min_shape), _dims(max_shape)))
        self._stream = self._cuda.Stream()
        self._events = [self._cuda.Event() for _ in range(4)]
        largest = self._create_contexts(engine, names)
        for name, nbytes in largest.items():
            self._device_buffers[name] = self._cuda.mem_alloc(max(nbytes, 1))
            for context in self._contexts:
                address = int(self._device_buffers[name])
                self._check(context.set_tensor_address(name, address), f"bind the device buffer of tensor {name!r}")
        if pinned_outputs:
            for spec in self.outputs:
                dtype = self._dtypes[spec.name]
                self._host_buffers[spec.name] = self._cuda.pagelocked_empty(largest[spec.name] // dtype.itemsize, dtype)
        log.debug("tensorrt %s loaded %s: %d profile(s)", trt_module.__version__, self._path, len(self._ranges))

    def _deserialize(self) -> trt.ICudaEngine:
        import tensorrt as trt_module

        try:
            plan = self._path.read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read TensorRT engine {self._path}: {exc}") from exc
        take_tensorrt_errors()
        self._runtime = trt_module.Runtime(tensorrt_logger())
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(
                f"TensorRT {trt_module.__version__} cannot deserialize {self._path} "
                f"({take_tensorrt_errors() or 'no details'}): it was built by another TensorRT version "
                "or for another GPU; rebuild it on this machine"
            )
        self._engine = engine
        return engine

    def _create_contexts(self, engine: trt.ICudaEngine, names: Sequence[str]) -> dict[str, int]:
        """One context per profile; returns each tensor's largest size in bytes over all profiles."""
        largest = dict.fromkeys(names, 0)
        for profile, (_min_shape, max_shape) in enumerate(self._ranges):
            context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT cannot create an execution context for {self._path}: out of GPU memory?")
            self._contexts.append(context)
            selected = context.set_optimization_profile_async(profile, self._stream.handle)
            self._check(selected, f"select optimization profile {profile}")
            self._stream.synchronize()  # the profile switch is enqueued; shapes may be set once it is done
            self._set_shape(context, max_shape)
            for name in names:
                nbytes = buffer_nbytes(_dims(context.get_tensor_shape(name)), self._dtypes[name])
                largest[name] = max(largest[name], nbytes)
        return largest

    def _run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        array = np.asarray(feeds[self._input])
        what = f"{self.model_name} input {self._input!r}"
        if array.dtype != self._dtypes[self._input]:
            raise BackendError(f"{what} takes {self._dtypes[self._input]}, got {array.dtype}")
        profile = choose_profile(self._ranges, array.shape, what=what)
        wanted = list(dict.fromkeys(output_names))
        pieces: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        timings = dict.fromkeys(("h2d_ms", "compute_ms", "d2h_ms"), 0.0)
        with self._lock:
            if self._cuda_context is None:
                raise BackendError(f"tensorrt runner for {self.model_name!r} is closed; create a new Pipeline")
            context = self._contexts[profile]
            self._cuda_context.push()
            try:
                if len(array) == 0:
                    for name, empty in zip(wanted, self._empty_outputs(context, array.shape, wanted)):
                        pieces[name].append(empty)
                for part in batch_slices(len(array), self._ranges[profile][1][0]):
                    chunk = np.ascontiguousarray(array[part])
                    for name, result in zip(wanted, self._run_chunk(context, chunk, wanted, timings)):
                        pieces[name].append(result)
            finally:
                self._cuda_context.pop()
            self._record_timings(timings)
        return [pieces[name][0] if len(pieces[name]) == 1 else np.concatenate(pieces[name]) for name in output_names]

    def _run_chunk(
        self, context: trt.IExecutionContext, chunk: np.ndarray, output_names: Sequence[str], timings: dict[str, float]
    ) -> list[np.ndarray]:
        cuda, stream = self._cuda, self._stream
        start, copied_in, computed, copied_out = self._events
        self._set_shape(context, chunk.shape)
        start.record(stream)
        cuda.memcpy_htod_async(self._device_buffers[self._input], chunk, stream)
        copied_in.record(stream)
        self._check(context.execute_async_v3(stream.handle), f"run on a batch of shape {chunk.shape}")
        computed.record(stream)
        results = []
        for name in output_names:
            shape = _dims(context.get_tensor_shape(name))
            size = buffer_nbytes(shape, self._dtypes[name]) // self._dtypes[name].itemsize
            pinned = self._host_buffers.get(name)
            host = pinned[:size].reshape(shape) if pinned is not None else np.empty(shape, self._dtypes[name])
            cuda.memcpy_dtoh_async(host, self._device_buffers[name], stream)
            results.append(host)
        copied_out.record(stream)
        copied_out.synchronize()
        timings["h2d_ms"] += copied_in.time_since(start)
        timings["compute_ms"] += computed.time_since(copied_in)
        timings["d2h_ms"] += copied_out.time_since(computed)
        return [host.copy() if name in self._host_buffers else host for name, host in zip(output_names, results)]

    def _empty_outputs(
        self, context: trt.IExecutionContext, shape: tuple[int, ...], output_names: Sequence[str]
    ) -> list[np.ndarray]:
        """Outputs for a batch of 0: TensorRT cannot run it, but a batch of 1 tells the output shapes."""
        self._set_shape(context, (1, *shape[1:]))
        return [np.empty((0, *_dims(context.get_tensor_shape(n))[1:]), self._dtypes[n]) for n in output_names]

    def _set_shape(self, context: trt.IExecutionContext, shape: Sequence[int]) -> None:
        shape = tuple(shape)
        self._check(context.set_input_shape(self._input, shape), f"set input {self._input!r} to shape {shape}")

    def _check(self, ok: bool, action: str) -> None:
        if not ok:
            details = take_tensorrt_errors()
            raise BackendError(f"TensorRT failed to {action} for {self._path}" + (f": {details}" if details else ""))

    def _spec(self, engine: trt.ICudaEngine, name: str) -> TensorSpec:
        shape = _dims(engine.get_tensor_shape(name))
        named = tuple(dim if dim >= 0 else ("batch" if axis == 0 else f"dim{axis}") for axis, dim in enumerate(shape))
        return TensorSpec(name, named, self._dtypes[name].name)

    def close(self) -> None:
        """Free the engine, contexts and buffers (in the CUDA context that owns them)."""
        with self._lock:
            super().close()
            if self._cuda_context is not None:
                self._cuda_context.push()
                try:
                    self._release()
                finally:
                    self._cuda_context.pop()
                    self._cuda_context.detach()
                    self._cuda_context = None

    def _release(self) -> None:
        """Drop the TensorRT objects and free the buffers; the CUDA context must be current."""
        self._contexts.clear()
        self._engine = self._runtime = None
        for buffer in self._device_buffers.values():
            buffer.free()
        for host in self._host_buffers.values():
            host.base.free()
        self._device_buffers.clear()
        self._host_buffers.clear()


def _dims(dims: Any) -> tuple[int, ...]:
    """A TensorRT Dims (or any sequence) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}..{high}"
