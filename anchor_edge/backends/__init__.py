"""Choose and open the backend that runs a bundle's two models.

One module per backend (`ort`, `trt`), one interface (`base.Runner`). The
choice is explicit and logged: "auto" takes TensorRT only when the bundle
carries engines and TensorRT and a GPU are present, and says so; asking for
a backend that cannot run is an error, never a silent fallback.
"""
from __future__ import annotations

import logging

from ..bundle import Bundle
from ..errors import BackendError
from .base import Runner, TensorSpec

log = logging.getLogger("anchor_edge")

BACKENDS = ("auto", "onnxruntime", "tensorrt")

__all__ = ["BACKENDS", "Runner", "TensorSpec", "open_runners", "resolve_backend"]

def resolve_backend(bundle: Bundle, backend: str) -> str:
    """Turn "auto" into a concrete backend name and check an explicit choice can run."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    from .trt import tensorrt_available

    has_engines = bool(bundle.meta.get("engines"))
    if backend == "auto":
        available, reason = tensorrt_available()
        chosen = "tensorrt" if has_engines and available else "onnxruntime"
        why = "bundle has engines and TensorRT is available" if chosen == "tensorrt" else (
            reason if has_engines else "bundle has no TensorRT engines"
        )
        log.info("backend auto -> %s (%s)", chosen, why)
        return chosen
    if backend == "tensorrt" and not has_engines:
        raise BackendError(
            f"{bundle.root} has no TensorRT engines; build them on the target GPU with "
            f"python export/to_trt.py --out {bundle.root}, or use backend='onnxruntime'"
        )
    return backend

def open_runners(bundle: Bundle, backend: str = "auto", *, threads: int | None = None) -> tuple[Runner, Runner]:
    """Open (anchornet, downstream) runners for `bundle` on the chosen backend."""
    chosen = resolve_backend(bundle, backend)
    if chosen == "tensorrt":
        from .trt import TrtRunner

        engines = bundle.meta["engines"]
        return tuple(TrtRunner.from_bundle(bundle, role) for role in ("anchornet", "downstream"))  # type: ignore[return-value]
    from .ort import OrtRunner

    return OrtRunner(bundle.anchornet.path, threads=threads), OrtRunner(bundle.downstream.path, threads=threads)
