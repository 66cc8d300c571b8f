"""Choose and open the backend that runs a bundle's two models.

One module per backend (`ort`, `trt`), one interface (`base.Runner`). The
choice is explicit and logged: "auto" takes TensorRT only when the bundle
carries engines and TensorRT and a GPU are present, and says so; asking for
a backend that cannot run is an error, never a silent fallback.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from ..bundle import Bundle
from ..errors import BackendError
from ..schema import Role
from .base import Runner, TensorSpec
from .ort_providers import ProviderOptions

log = logging.getLogger("anchor_edge")

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")

__all__ = ["BACKENDS", "Runner", "TensorSpec", "auto_choice", "open_runners", "resolve_backend"]


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
            f"python export/to_trt.py --out {bundle.root}, or use backend='onnxruntime'"
        )
    return backend


def _auto(bundle: Bundle, has_engines: bool) -> tuple[str, str]:
    """TensorRT when the bundle's engines can run on this machine, else ONNX Runtime; and why."""
    if not has_engines:
        return "onnxruntime", "bundle has no TensorRT engines"
    from .trt import engine_mismatches, tensorrt_available

    available, reason = tensorrt_available()
    if not available:
        return "onnxruntime", reason
    mismatches = [m for role in Role for m in engine_mismatches(bundle, role)]
    if mismatches:
        return "onnxruntime", "engines do not fit this machine: " + "; ".join(mismatches)
    return "tensorrt", "bundle engines match this machine's TensorRT and GPU"


def open_runners(
    bundle: Bundle,
    backend: str = "auto",
    *,
    threads: int | None = None,
    providers: str | Sequence[str] = "cpu",
    provider_options: ProviderOptions | None = None,
    device: str = "CPU",
    inference_precision: str = "f32",
) -> tuple[Runner, Runner]:
    """Open (anchornet, downstream) runners for `bundle` on the chosen backend.

    ONNX Runtime runs on `providers`; OpenVINO compiles for `device` at `inference_precision`.
    """
    chosen = resolve_backend(bundle, backend)
    if chosen == "tensorrt":
        from .trt import TrtRunner

        return TrtRunner.from_bundle(bundle, Role.ANCHORNET), TrtRunner.from_bundle(bundle, Role.DOWNSTREAM)
    if chosen == "openvino":
        from .openvino import OpenVinoRunner

        return tuple(  # type: ignore[return-value]
            OpenVinoRunner(bundle.path(role), device=device, precision=inference_precision, threads=threads) for role in Role
        )
    from .ort import OrtRunner

    settings = dict(threads=threads, providers=providers, provider_options=provider_options or ProviderOptions())
    anchornet = OrtRunner(bundle.path(Role.ANCHORNET), **settings)
    return anchornet, OrtRunner(bundle.path(Role.DOWNSTREAM), **settings)
