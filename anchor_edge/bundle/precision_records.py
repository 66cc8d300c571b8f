"""What the export's checks record in bundle.json: ONNX parity, INT8 and FP16 conversion, the precision check.

Part of the bundle schema (anchor_edge/bundle/schema.py), kept apart because
only the export writes these records; the run time reads them to show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from anchor_edge.bundle.choices import Int8Target, Precision


@dataclass(frozen=True)
class Verification:
    """How the exported ONNX model compared with PyTorch on ONNX Runtime (export/graph/verify.py)."""

    images: int
    sizes: tuple[int, ...]
    max_abs_diff: dict[str, float]
    top1_agreement: float
    tolerance: float


@dataclass(frozen=True)
class Calibration:
    """Which images set an INT8 model's activation ranges."""

    images: int
    source: str
    inputs_per_size: dict[int, int] | None = None


@dataclass(frozen=True)
class Int8Record:
    """How an INT8 model was quantized (export/precision/int8.py)."""

    format: str
    target: Int8Target
    activations: str
    weights: str
    calibration_method: str
    unquantized_op_types: tuple[str, ...]
    float_layers: tuple[str, ...]
    float_output_ops: tuple[str, ...]
    seven_bit_layers: tuple[str, ...]
    calibration: Calibration | None = None


@dataclass(frozen=True)
class Fp16Record:
    """How an FP16 model was converted (export/precision/fp16.py)."""

    method: str
    io_types: str
    output_identities: tuple[str, ...]


@dataclass(frozen=True)
class Difference:
    """Absolute differences between two bundles' probabilities."""

    max_abs_diff: float
    mean_abs_diff: float
    patches: int | None = None


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy of the reference and the converted bundle, when the held-out images have labels."""

    reference: float
    candidate: float


@dataclass(frozen=True)
class PrecisionCheck:
    """How the converted bundle answered against its FP32 reference on held-out images (export/precision/check.py)."""

    images: int
    pipeline_top1_agreement: float
    anchornet_decision_agreement: float
    anchornet_probs: Difference
    patch_probs: Difference
    reference: str
    held_out_source: str
    models: dict[str, Precision]
    min_agreement: float
    top1_accuracy: Accuracy | None = None
