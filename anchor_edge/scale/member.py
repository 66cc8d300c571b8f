"""The Pipeline each member of a Ray pool (a batch actor, a serve replica) opens.

Ray sets OMP_NUM_THREADS to a member's CPUs, which ONNX Runtime does not
read, so every member passes its threads explicitly: to the chosen backend
when that backend takes threads (ONNX Runtime, OpenVINO), never to one that
does not (TensorRT), where they only size the member's CPU reservation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anchor_edge.backends import BackendOptions, resolve_backend
from anchor_edge.backends.options import takes
from anchor_edge.bundle import load_bundle
from anchor_edge.pipeline import Pipeline


def open_member_pipeline(
    bundle: str,
    *,
    threads: int,
    backend: str | BackendOptions = "auto",
    backend_keywords: Mapping[str, Any] | None = None,
) -> Pipeline:
    """`Pipeline.from_bundle(bundle, backend=..., **backend_keywords)`, with `threads` where the backend takes them."""
    keywords = dict(backend_keywords or {})
    if isinstance(backend, str):
        backend = resolve_backend(load_bundle(bundle), backend)
        if takes(backend, "threads"):
            keywords.setdefault("threads", threads)
    return Pipeline.from_bundle(bundle, backend=backend, **keywords)
