"""ONNX Runtime backend, tuned for two models sharing a few CPU cores.

AnchorNet and the downstream network run alternately. With ONNX Runtime's
default thread spinning, the idle session's workers keep spinning after its
run and steal the cores of the busy one (measured on 2 cores: an idle
ResNet-50 session slowed AnchorNet from about 12 to 25 ms). Switching
spinning off altogether costs too: every one of AnchorNet's ~300 small
kernels then wakes its workers from sleep. So the workers spin within a run
and stop the moment it returns (`session.force_spinning_stop`, ONNX Runtime
>= 1.12): measured on 2 cores, AnchorNet about a tenth faster than with
spinning off (docs/decisions/019-ort-spin-within-a-run.md).

On ONNX Runtime's TensorRT provider the model runs within the optimization
profiles it was given (anchor_edge/backends/ort_tensorrt.py): a batch above
its profile's maximum is split and the outputs joined, as the TensorRT
backend does, so the provider never has to build another engine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from anchor_edge.backends.base import Runner, TensorSpec
from anchor_edge.backends.ort_providers import check_active, choose, session_providers
from anchor_edge.backends.ort_tensorrt import TensorrtProvider
from anchor_edge.backends.trt.runner import batch_slices, choose_profile
from anchor_edge.bundle.schema import Profile
from anchor_edge.errors import BackendError, InputError

log = logging.getLogger("anchor_edge")

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
}


class OrtRunner(Runner):
    """One ONNX model on ONNX Runtime, on the execution providers asked for (anchor_edge/backends/ort_providers.py).

    Args:
        model_path: the .onnx file.
        threads: intra-op threads; None lets ONNX Runtime use every physical core.
        providers: "cpu" (the default), "cuda", "tensorrt", "openvino", a list of
            them in priority order, or "auto". A requested provider that does not
            start is a BackendError, never a silent CPU run.
        tensorrt: what sets up the TensorRT provider for this model, called only when it
            is among the providers (`ort_tensorrt.tensorrt_provider` of the model's bundle).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        providers: str | Sequence[str] = "cpu",
        tensorrt: Callable[[], TensorrtProvider] | None = None,
    ) -> None:
        super().__init__(Path(model_path).name)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(
                "onnxruntime is not installed: pip install 'anchor-edge[cpu]' on a PC (or onnxruntime-gpu for CUDA)"
            ) from exc
        self.providers = choose(providers, ort.get_available_providers())
        setup = self._tensorrt_setup(tensorrt) if "tensorrt" in self.providers else None
        #: The TensorRT provider's profiles, which `_run` splits batches by; empty without that provider.
        self.profiles: tuple[Profile, ...] = () if setup is None else setup.profiles
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path),
                options,
                providers=session_providers(self.providers, None if setup is None else setup.options),
            )
        except Exception as exc:  # ORT raises its own untyped errors for unreadable models
            raise BackendError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        check_active(self.providers, self._session.get_providers(), self.model_name)
        self.inputs = [_spec(node) for node in self._session.get_inputs()]
        self.outputs = [_spec(node) for node in self._session.get_outputs()]
        log.debug(
            "onnxruntime %s loaded %s (threads=%s, providers %s)", ort.__version__, model_path, threads, self.providers
        )

    def _tensorrt_setup(self, tensorrt: Callable[[], TensorrtProvider] | None) -> TensorrtProvider:
        if tensorrt is None:
            raise InputError(
                f"ONNX Runtime's TensorRT provider takes its profiles, engine cache and precision from a bundle, and "
                f"{self.model_name} was opened without one: open the bundle with "
                "Pipeline.from_bundle(path, backend='onnxruntime', providers='tensorrt')"
            )
        return tensorrt()

    def _run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        if not self.profiles:
            return self._run_session(feeds, output_names)
        name = self.profiles[0].input
        array = np.asarray(feeds[name])
        ranges = [(profile.min, profile.max) for profile in self.profiles]
        what = f"{self.model_name} input {name!r} on ONNX Runtime's TensorRT provider"
        largest = ranges[choose_profile(ranges, array.shape, what=what)][1][0]
        slices = batch_slices(len(array), largest) or [slice(0, 0)]  # an empty batch goes to ONNX Runtime as it is
        parts = [self._run_session({**feeds, name: array[part]}, output_names) for part in slices]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([part[index] for part in parts]) for index in range(len(output_names))]

    def _run_session(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        try:
            return self._session.run(list(output_names), dict(feeds))
        except Exception as exc:
            shapes = {name: tuple(array.shape) for name, array in feeds.items()}
            raise BackendError(f"ONNX Runtime failed to run {self.model_name} on inputs {shapes}: {exc}") from exc

    def describe(self) -> str:
        return "onnxruntime:" + ",".join(self.providers)

    def close(self) -> None:
        super().close()
        self._session = None


def _spec(node) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else str(dim) for dim in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))
