"""Float32 ONNX model -> INT8 QDQ model, calibrated on real inputs (issue 4, item 1).

TensorRT 11 has no INT8 calibrator: INT8 must be in the ONNX graph, as
QuantizeLinear/DequantizeLinear (QDQ) pairs, and a strongly typed engine
follows them. ONNX Runtime's `quantize_static` writes those pairs; which
integer types to use depends on who runs the graph, so the target is a
choice recorded in bundle.json:

- ``cpu`` (ONNX Runtime's CPU provider): uint8 activations, int8 weights
  (U8S8). On x86 the fast integer kernels are U8S8; a prototype on AVX2
  without VNNI ran ResNet-50 1.9x faster than FP32 this way, while the
  default S8S8 left a third of the convolutions in float and gained nothing.
  Full 8-bit weights: ONNX Runtime's guide suggests 7-bit weights
  (`reduce_range`) on CPUs without VNNI, whose AVX2 kernels can saturate,
  but measured here (EfficientNet-Lite0 patches, Xeon with VNNI) 7-bit
  weights cut per-patch top-1 agreement with FP32 from about 80 % to 60 %.
  The precision check runs on the exporting machine and catches saturation
  there; export on the deployment CPU, or one like it.
- ``tensorrt``: TensorRT takes only symmetric signed INT8 (zero point 0), for
  activations and weights alike, and no quantized bias (biases stay float).

Both quantize weights per output channel. Softmax is never quantized: its
quantized form uses a fixed output scale of 1/256, which rounded AnchorNet's
small class probabilities to exact zeros and broke the branch decision.

The first and the last compute layers stay float (`float_ends`), the usual
post-training practice: the first sees the image, the last ones write the
logits that the softmax turns into decisions, and rounding those to 8 bits
flips close calls. Measured on the trained digits downstream
(EfficientNet-Lite0, 120 held-out images, AnchorNet in FP32): Pipeline top-1
agreement with FP32 went from 88.3 % to 96.7 % and the mean patch-probability
difference from 0.025 to 0.010, for 2 float layers (stem and classifier) out
of 50. In AnchorNet the rule keeps 17 of 95 float: the stem, the three
logit-map convolutions and, through the attention branch, the last
projections of each branch; its INT8 decisions stay fragile all the same
(README, Precision).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

log = logging.getLogger("anchor_edge")

#: ONNX op types left in float32.
UNQUANTIZED_OP_TYPES = ("Softmax",)
#: Layers with weights, the ones quantization makes integer.
COMPUTE_OP_TYPES = ("Conv", "Gemm", "MatMul")

#: quantize_static arguments per target, and how bundle.json describes them.
INT8_TARGETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "arguments": {
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "reduce_range": False,
            "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True},
        },
        "activations": "uint8, asymmetric, per tensor",
        "weights": "int8, symmetric, per output channel",
    },
    "tensorrt": {
        "arguments": {
            "activation_type": QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "reduce_range": False,
            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        },
        "activations": "int8, symmetric (zero point 0), per tensor",
        "weights": "int8, symmetric (zero point 0), per output channel; biases float",
    },
}


def quantize_to_int8(source: Path, target: Path, reader: CalibrationDataReader, *, int8_target: str) -> dict:
    """Write the INT8 QDQ version of `source` to `target`, calibrated by `reader`; return the bundle.json record.

    The model first goes through ONNX Runtime's quantization pre-processing
    (graph cleanup and ONNX shape inference), as its quantizer expects. Its
    symbolic shape inference (meant for transformers' dynamic dimensions) is
    skipped: it gives up on AnchorNet's squeeze-excite gates, exported as a
    Resize of the gate over the map (export/ort_layout.py).

    Raises:
        ValueError: `int8_target` is not "cpu" or "tensorrt".

    Example:
        >>> quantize_to_int8(Path("downstream.onnx"), Path("downstream.int8.onnx"), reader, int8_target="cpu")["format"]
        'QDQ'
    """
    if int8_target not in INT8_TARGETS:
        raise ValueError(f"unknown --int8-target {int8_target!r}; choose one of {sorted(INT8_TARGETS)}")
    settings = INT8_TARGETS[int8_target]
    with tempfile.TemporaryDirectory(prefix="anchor-edge-int8-") as workdir, _quiet_root_logger():
        prepared = Path(workdir) / source.name
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        float_layers = float_ends(graph)
        excluded = [n.name for n in graph.node if n.op_type in UNQUANTIZED_OP_TYPES] + float_layers
        quantize_static(
            str(prepared), str(target), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            **settings["arguments"],
        )
    onnx.checker.check_model(str(target))
    log.info("quantized %s to INT8 for %s (%.1f MB)", source.name, int8_target, target.stat().st_size / 1e6)
    return {
        "format": "QDQ",
        "target": int8_target,
        "activations": settings["activations"],
        "weights": settings["weights"],
        "calibration_method": "MinMax",
        "unquantized_op_types": list(UNQUANTIZED_OP_TYPES),
        "float_layers": float_layers,
    }


def float_ends(graph: onnx.GraphProto) -> list[str]:
    """Names of the first compute layer and of the last ones: those that reach a graph output through no other compute layer."""
    producer = {output: node for node in graph.node for output in node.output}
    compute = [node for node in graph.node if node.op_type in COMPUTE_OP_TYPES]
    ends = {compute[0].name} if compute else set()
    stack, seen = [output.name for output in graph.output], set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in COMPUTE_OP_TYPES:
            ends.add(node.name)
        else:
            stack.extend(node.input)
    return [node.name for node in graph.node if node.name in ends]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Hide the quantizer's chatter: it logs every rescaled bias through the root logger at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
