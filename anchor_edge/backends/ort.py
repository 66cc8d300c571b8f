"""ONNX Runtime backend, tuned for two models sharing a few CPU cores.

AnchorNet and the downstream network run alternately. With ONNX Runtime's
default thread spinning, the idle session's workers keep spinning and steal
the cores of the busy one (measured on 2 cores: an idle ResNet-50 session
slowed AnchorNet from about 12 to 25 ms), so spinning is switched off.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from anchor_edge.backends.base import Runner, TensorSpec
from anchor_edge.backends.ort_providers import ProviderOptions, check_active, choose, session_providers
from anchor_edge.errors import BackendError

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
        provider_options: the TensorRT provider's engine cache folder and FP16 switch.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        providers: str | Sequence[str] = "cpu",
        provider_options: ProviderOptions = ProviderOptions(),
    ) -> None:
        super().__init__(Path(model_path).name)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(
                "onnxruntime is not installed: pip install 'anchor-edge[cpu]' on a PC (or onnxruntime-gpu for CUDA)"
            ) from exc
        self.providers = choose(providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path),
                options,
                providers=session_providers(self.providers, provider_options, Path(model_path)),
            )
        except Exception as exc:  # ORT raises its own untyped errors for unreadable models
            raise BackendError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        check_active(self.providers, self._session.get_providers(), self.model_name)
        self.inputs = [_spec(node) for node in self._session.get_inputs()]
        self.outputs = [_spec(node) for node in self._session.get_outputs()]
        log.debug(
            "onnxruntime %s loaded %s (threads=%s, providers %s)", ort.__version__, model_path, threads, self.providers
        )

    def _run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
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
