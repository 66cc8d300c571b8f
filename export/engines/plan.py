"""A built engine's bundle.json record: its file, its profiles and the identity it was built for.

The profiles themselves are planned by the runtime
(`anchor_edge/backends/trt/profiles.py`), which ONNX Runtime's TensorRT
provider shares; the identity fields are compared by the runtime before an
engine is loaded (`anchor_edge/backends/trt/identity.py`). Pure Python (no
TensorRT).
"""

from __future__ import annotations

from typing import Sequence

from anchor_edge.bundle.choices import Precision
from anchor_edge.bundle.schema import EngineRecord, Profile


def engine_record(
    *,
    file: str,
    sha256: str,
    onnx_sha256: str,
    precision: Precision,
    profiles: Sequence[Profile],
    tensorrt: str,
    gpu: str,
    compute_capability: str,
) -> EngineRecord:
    """One entry of bundle.json "engines": the file, its profiles and its identity.

    Example:
        >>> profile = Profile("image", (1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))
        >>> engine_record(file="anchornet.engine", sha256="...", onnx_sha256="...", precision=Precision.FP32,
        ...               profiles=[profile], tensorrt="10.3.0", gpu="Orin",
        ...               compute_capability="8.7").profiles[0].max
        (8, 3, 224, 224)
    """
    return EngineRecord(
        file=file,
        sha256=sha256,
        profiles=tuple(profiles),
        tensorrt=tensorrt,
        gpu=gpu,
        compute_capability=compute_capability,
        onnx_sha256=onnx_sha256,
        precision=Precision(precision),
    )
