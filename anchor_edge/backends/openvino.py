"""OpenVINO backend: the bundle's ONNX models on Intel CPUs, integrated GPUs and NPUs.

OpenVINO reads the ONNX files directly (no conversion step, no engine to
ship) and compiles them for a device. On a CPU with AMX or AVX-512 BF16 it
would by default run in bf16, which changes the numbers (docs/backends.md),
so this runner asks for f32 unless told otherwise: a reduced precision is
chosen on purpose and checked against FP32 with `anchor-edge verify`, never
taken silently. What the compiled model really runs in is read back from it
(`inference_precision`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from anchor_edge.backends.base import Runner, TensorSpec
from anchor_edge.backends.options import OPENVINO_PRECISIONS
from anchor_edge.errors import BackendError, InputError

log = logging.getLogger("anchor_edge")

INSTALL = "pip install openvino"


def openvino_devices() -> list[str]:
    """The devices OpenVINO sees here (e.g. CPU, GPU, NPU); empty when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return []
    return list(ov.Core().available_devices)


def cpu_supports(precision: str) -> bool:
    """Whether OpenVINO's CPU plugin can run `precision` natively on this CPU (detected, never assumed)."""
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return precision == "f32" or precision.upper() in {str(c).upper() for c in capabilities}


class OpenVinoRunner(Runner):
    """One ONNX model compiled by OpenVINO for `device` at `precision`.

    Args:
        model_path: the .onnx file.
        device: an OpenVINO device name ("CPU", "GPU", "NPU", "AUTO").
        precision: inference precision "f32" (the default), "bf16" or "f16"; bf16
            on the CPU only where the CPU has it.
        threads: CPU inference threads; None lets OpenVINO decide.
    """

    backend = "openvino"

    def __init__(
        self, model_path: str | Path, *, device: str = "CPU", precision: str = "f32", threads: int | None = None
    ) -> None:
        super().__init__(Path(model_path).name)
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendError(f"openvino is not installed: {INSTALL}") from exc
        if precision not in OPENVINO_PRECISIONS:
            raise InputError(f"precision must be one of {OPENVINO_PRECISIONS}, got {precision!r}")
        core = ov.Core()
        if device not in core.available_devices and device != "AUTO":
            raise BackendError(f"OpenVINO has no device {device!r} here (it sees {core.available_devices})")
        if device == "CPU" and not cpu_supports(precision):
            raise BackendError(f"this CPU has no native {precision} for OpenVINO; use precision='f32'")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = core.compile_model(core.read_model(str(model_path)), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own messages
            raise BackendError(f"OpenVINO cannot compile {model_path} for {device}: {exc}") from exc
        self.device = device
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT") if device == "CPU" else precision
        self.inference_precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self.inputs = [_spec(port) for port in self._compiled.inputs]
        self.outputs = [_spec(port) for port in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        log.debug("openvino %s compiled %s for %s in %s", ov.__version__, model_path, device, self.inference_precision)

    def _run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        try:
            with self._lock:
                results = self._request.infer({name: np.ascontiguousarray(array) for name, array in feeds.items()})
                by_name = {port.get_any_name(): np.array(value) for port, value in results.items()}
        except Exception as exc:
            shapes = {name: tuple(array.shape) for name, array in feeds.items()}
            raise BackendError(f"OpenVINO failed to run {self.model_name} on inputs {shapes}: {exc}") from exc
        return [by_name[name] for name in output_names]

    def describe(self) -> str:
        return f"openvino:{self.device}:{self.inference_precision}"

    def close(self) -> None:
        super().close()
        self._request = None
        self._compiled = None


def _spec(port: Any) -> TensorSpec:
    shape = tuple(int(dim.get_length()) if dim.is_static else "?" for dim in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), shape, str(port.get_element_type()))
