"""Choose and open the backend that runs a bundle's two models.

One module per backend (`ort`, `openvino`, `trt/`), one interface
(`base.Runner`), one frozen options value per backend (`options`). The
choice is explicit and logged: "auto" takes TensorRT only when the bundle
carries engines and TensorRT and a GPU are present, and says so; asking for
a backend that cannot run is an error, never a silent fallback; an option
the chosen backend does not take is an InputError.
"""

from __future__ import annotations

import logging
from typing import Any

from anchor_edge.backends.base import Runner, TensorSpec
from anchor_edge.backends.options import (
    OPTIONS_BY_BACKEND,
    BackendOptions,
    OnnxRuntimeOptions,
    OpenVinoOptions,
    TensorRtOptions,
    backend_options,
)
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.load import Bundle
from anchor_edge.errors import BackendError, InputError

log = logging.getLogger("anchor_edge")

BACKENDS = ("auto", *OPTIONS_BY_BACKEND)

__all__ = [
    "BACKENDS",
    "BackendOptions",
    "OnnxRuntimeOptions",
    "OpenVinoOptions",
    "Runner",
    "TensorRtOptions",
    "TensorSpec",
    "auto_choice",
    "open_runners",
    "resolve_backend",
]


def auto_choice(bundle: Bundle) -> tuple[str, str]:
    """What "auto" would run `bundle` on here, and why (for `anchor-edge doctor`)."""
    return _auto(bundle, bool(bundle.manifest.engines))


def resolve_backend(bundle: Bundle, backend: str) -> str:
    """Turn "auto" into a concrete backend name and check an explicit choice can run."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    has_engines = bool(bundle.manifest.engines)
    if backend == "auto":
        chosen, why = _auto(bundle, has_engines)
        log.info("backend auto -> %s (%s)", chosen, why)
        return chosen
    if backend == "tensorrt" and not has_engines:
        raise BackendError(
            f"{bundle.root} has no TensorRT engines; build them on the target GPU with "
            f"python export/to_trt.py --bundle {bundle.root}, or use backend='onnxruntime'"
        )
    return backend


def _auto(bundle: Bundle, has_engines: bool) -> tuple[str, str]:
    """TensorRT when the bundle's engines can run on this machine, else ONNX Runtime; and why."""
    if not has_engines:
        return "onnxruntime", "bundle has no TensorRT engines"
    from anchor_edge.backends.trt.runner import engine_mismatches, tensorrt_available

    available, reason = tensorrt_available()
    if not available:
        return "onnxruntime", reason
    mismatches = [m for role in Role for m in engine_mismatches(bundle, role)]
    if mismatches:
        return "onnxruntime", "engines do not fit this machine: " + "; ".join(mismatches)
    return "tensorrt", "bundle engines match this machine's TensorRT and GPU"


def open_runners(bundle: Bundle, backend: str | BackendOptions = "auto", **keywords: Any) -> tuple[Runner, Runner]:
    """Open (anchornet, downstream) runners for `bundle`.

    Args:
        bundle: the loaded bundle.
        backend: "auto", a backend's name, or its options value (`OnnxRuntimeOptions(...)`, ...).
        keywords: with a name or "auto", the keyword forms of the chosen backend's
            options (threads, providers, provider_options, device, inference_precision);
            None counts as not given.

    Raises:
        InputError: an option the chosen backend does not take, or keywords next to an options value.
        BackendError: the backend is unknown, missing, or cannot load the models.
    """
    given = sorted(name for name, value in keywords.items() if value is not None)
    if isinstance(backend, str):
        options = backend_options(resolve_backend(bundle, backend), **keywords)
    elif not isinstance(backend, tuple(OPTIONS_BY_BACKEND.values())):
        raise InputError(f"backend must be one of {list(BACKENDS)} or a backend's options value, got {backend!r}")
    elif given:
        raise InputError(f"{', '.join(given)} given next to {type(backend).__name__}; put them inside it")
    else:
        resolve_backend(bundle, backend.backend)
        options = backend
    return options.open(bundle)
