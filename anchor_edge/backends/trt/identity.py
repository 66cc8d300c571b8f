"""What a TensorRT engine was built for, and whether this machine still matches it.

A serialized engine is valid only for the TensorRT version and the GPU it was
built on, and only for the ONNX model and precision it was built from. The
export stage records all of that beside each engine in bundle.json; the
runtime compares the record with this machine before loading, so a stale
engine fails with a message naming both sides rather than with TensorRT's
deserialization error (or, worse, after an ONNX re-export, with a silently
different model). Pure Python: the runtime reads it without TensorRT; the
export stage (`export/engines/plan.py`) writes the records.

The record is `anchor_edge.bundle.schema.EngineRecord` (bundle.json ``"engines"``,
one entry per model role; docs/bundle-format.md lists its fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import EngineRecord, Manifest
from anchor_edge.errors import BundleError

#: The fields whose change invalidates an engine, in the order mismatches are reported.
IDENTITY_FIELDS = ("tensorrt", "gpu", "compute_capability", "onnx_sha256", "precision")


def engine_identity(
    *, tensorrt: str, gpu: str, compute_capability: str, onnx_sha256: str, precision: str
) -> dict[str, str]:
    """The identity record of one engine: everything that, when it changes, means "rebuild".

    Example:
        >>> engine_identity(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7",
        ...                 onnx_sha256="ab12", precision="fp16")["gpu"]
        'Orin'
    """
    return {
        "tensorrt": tensorrt,
        "gpu": gpu,
        "compute_capability": compute_capability,
        "onnx_sha256": onnx_sha256,
        "precision": precision,
    }


def identity_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Compare an engine's recorded identity with the current machine and bundle.

    Args:
        recorded: the engine's entry in bundle.json ``"engines"`` (extra fields ignored).
        current: `engine_identity` of this machine (TensorRT version, GPU, compute
            capability) and of the bundle's ONNX model (sha256, precision).
            Only the fields present in `current` are compared.

    Returns:
        One sentence per mismatching field, naming the recorded value and the
        current one; empty when the engine may be loaded.

    Example:
        >>> identity_mismatches({"tensorrt": "10.3.0"}, {"tensorrt": "11.4.0"})
        ['engine built with TensorRT 10.3.0, this machine has 11.4.0']
    """
    messages = []
    for field in IDENTITY_FIELDS:
        if field not in current:
            continue
        now, then = str(current[field]), recorded.get(field)
        if then is None:
            messages.append(f"engine record has no {field!r} (this machine has {now}); rebuild the engine")
        elif str(then) != now:
            messages.append(_MESSAGES[field].format(then=_short(field, str(then)), now=_short(field, now)))
    return messages


def identity_of(record: EngineRecord) -> dict[str, str]:
    """The identity fields of an engine record, as `identity_mismatches` compares them."""
    values = dataclasses.asdict(record)
    return {field: str(values[field]) for field in IDENTITY_FIELDS}


def engine_entry(manifest: Manifest, role: Role, *, source: str = "bundle.json") -> EngineRecord:
    """The ``engines.<role>`` record of a bundle's manifest.

    Raises:
        BundleError: when the bundle has no engine for `role`.
    """
    record = manifest.engines[role]
    if record is None:
        raise BundleError(
            f"{source} has no TensorRT engine for '{role}': build the engines on this machine "
            "(export.engines.build.build_engines, then record_engines) or use the onnxruntime backend"
        )
    return record


_MESSAGES = {
    "tensorrt": "engine built with TensorRT {then}, this machine has {now}",
    "gpu": "engine built on GPU {then!r}, this machine has {now!r}",
    "compute_capability": "engine built for compute capability {then}, this machine has {now}",
    "onnx_sha256": "engine built from ONNX sha256 {then}, the bundle's ONNX model is {now}",
    "precision": "engine built at precision {then}, the bundle's ONNX model is {now}",
}


def _short(field: str, value: str) -> str:
    """Checksums shortened to 12 hex digits: enough to tell two apart in a message."""
    return f"{value[:12]}..." if field == "onnx_sha256" and len(value) > 12 else value
