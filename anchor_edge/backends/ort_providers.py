"""ONNX Runtime's execution providers: which to ask for, how to set them up, and how to tell one did not start.

ONNX Runtime falls back to the CPU without a word when a requested provider
cannot start (a missing CUDA library, a CPU-only wheel), which is the most
common way a "GPU" deployment ends up running on the CPU. So a runner
compares what it asked for with `session.get_providers()` and raises a
`BackendError` naming the missing provider and the package that brings it.

Names: "cpu", "cuda", "tensorrt" (ONNX Runtime's TensorRT provider, not this
SDK's own TensorRT backend), "openvino". "auto" takes the first one this
onnxruntime build offers in AUTO_ORDER and logs why. The TensorRT provider's
own options (profiles, engine cache, precision) come from the bundle:
anchor_edge/backends/ort_tensorrt.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from anchor_edge.errors import BackendError

log = logging.getLogger("anchor_edge")

ORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
INSTALL = {
    "cpu": "pip install onnxruntime",
    "cuda": "pip install onnxruntime-gpu (it needs CUDA and cuDNN libraries matching its build; "
    "on a Jetson, NVIDIA's wheel)",
    "tensorrt": "pip install onnxruntime-gpu and the TensorRT libraries it was built against (LD_LIBRARY_PATH)",
    "openvino": "pip install onnxruntime-openvino (it replaces the onnxruntime wheel)",
}
#: What "auto" tries, fastest first where present.
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")


class ProviderOptions(NamedTuple):
    """What a user may set of the providers' options: where the TensorRT provider caches its engines.

    None keeps them inside the bundle (its `ort-tensorrt/` folder); give a
    folder when the bundle's is read-only. Profiles and precision are the
    bundle's, so there is nothing to set for them (anchor_edge/backends/ort_tensorrt.py).
    """

    tensorrt_cache: Path | str | None = None


def choose(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """The provider names to ask for, in priority order; "auto" picks from AUTO_ORDER among `available` (ORT names).

    Raises:
        BackendError: an unknown name, or a requested provider this onnxruntime build does not have.
    """
    if isinstance(requested, str) and requested == "auto":
        picked = next(name for name in AUTO_ORDER if ORT_NAMES[name] in available or name == "cpu")
        why = "the first of " + ", ".join(AUTO_ORDER) + f" this onnxruntime offers (it has {', '.join(available)})"
        log.info("onnxruntime providers auto -> %s (%s)", picked, why)
        return [picked]
    names = [requested] if isinstance(requested, str) else list(requested)
    unknown = [name for name in names if name not in ORT_NAMES]
    if unknown or not names:
        raise BackendError(
            f"unknown ONNX Runtime provider(s) {unknown or names}; choose from {sorted(ORT_NAMES)} or 'auto'"
        )
    missing = [name for name in names if ORT_NAMES[name] not in available]
    if missing:
        raise BackendError(_missing_message(missing, available))
    return names


def session_providers(names: Sequence[str], tensorrt_options: Mapping[str, Any] | None) -> list[Any]:
    """ONNX Runtime's `providers=` list: each name (the TensorRT provider with its options), the CPU last.

    The CPU comes last for any node the others lack. `tensorrt_options` is
    `ort_tensorrt.tensorrt_provider_options` of the model, needed when "tensorrt" is among `names`.
    """
    providers: list[Any] = []
    for name in names:
        if name == "tensorrt":
            if tensorrt_options is None:
                raise BackendError("the tensorrt provider was asked for without its options (ort_tensorrt.py)")
            providers.append((ORT_NAMES[name], dict(tensorrt_options)))
        else:
            providers.append(ORT_NAMES[name])
    if "cpu" not in names:
        providers.append(ORT_NAMES["cpu"])
    return providers


def check_active(names: Sequence[str], active: Sequence[str], model: str) -> None:
    """Raise BackendError when a requested provider is not among the session's active ones (a silent CPU fallback)."""
    inactive = [name for name in names if ORT_NAMES[name] not in active]
    if inactive:
        raise BackendError(
            f"ONNX Runtime did not start {', '.join(ORT_NAMES[n] for n in inactive)} for {model} "
            f"(active: {', '.join(active)}); " + "; ".join(f"{name}: {INSTALL[name]}" for name in inactive)
        )


def _missing_message(missing: Sequence[str], available: Sequence[str]) -> str:
    return (
        f"this onnxruntime build has no {', '.join(ORT_NAMES[n] for n in missing)} (it has {', '.join(available)}); "
        + "; ".join(f"{name}: {INSTALL[name]}" for name in missing)
    )
