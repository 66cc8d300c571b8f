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
  Without VNNI those kernels add pairs of uint8 x int8 products in 16 bits
  (vpmaddubsw), which saturates past 32767: 255 x 127 x 2 is 64770. So the
  convolutions they run, all but depthwise ones (those have a kernel of their
  own), get 7-bit weights (-64..64: ONNX Runtime's `reduce_range`, set per
  layer): 255 x 64 x 2 = 32640 cannot saturate, on any CPU. Depthwise
  convolutions keep 8 bits: with 9 or 25 taps per output, their weights'
  resolution matters most. Measured on an AMD EPYC with AVX2 and no VNNI
  (default bundle, both models INT8, 480 held-out images), with 8-bit
  weights in ONNX Runtime's fused kernels / 8-bit weights in exact
  arithmetic (graph optimizations off, so no fusion; VNNI should give the
  same) / these 7-bit weights, fused: INT8 AnchorNet's decisions matched
  FP32 on 84.0 / 91.0 / 90.0 % of images, and the Pipeline agreed with FP32
  on 94.6 / 96.3 / 95.8 % (93.8 / 95.4 / 95.8 % on 480 other images). The
  7-bit model answered the same with fusion off: nothing saturates. 7-bit
  weights in every layer (ONNX Runtime's global `reduce_range`) cost more:
  93.5 / 94.6 % on the two sets. The kernels are those of 8-bit weights,
  and so is the speed (README, Precision).
- ``tensorrt``: TensorRT takes only symmetric signed INT8 (zero point 0), for
  activations and weights alike, and no quantized bias (biases stay float).

Both quantize weights per output channel. Softmax is never quantized: its
quantized form uses a fixed output scale of 1/256, which rounded AnchorNet's
small class probabilities to exact zeros and broke the branch decision.

The first and the last compute layers stay float (`float_ends`), the usual
post-training practice: the first see the image, the last ones write the
logits that the softmax turns into decisions, and rounding those to 8 bits
flips close calls. Measured on the trained digits downstream
(EfficientNet-Lite0, 120 held-out images, AnchorNet in FP32): Pipeline top-1
agreement with FP32 went from 88.3 % to 96.7 % and the mean patch-probability
difference from 0.025 to 0.010, for 2 float layers (stem and classifier) out
of 50. "The first" are three: the stem and, in MobileNet-style networks, the
first bottleneck's depthwise and projection convolutions: most of the error
that reaches the logits is made there (ONNX Runtime's qdq_loss_debug on
that downstream: accumulated signal-to-noise 29 dB after the first quantized
layer, 22 after the third, 17-21 at the last). With them the downstream
agreed with FP32 on 98.5 % of 480 test images it was not chosen on, against
96.3 % with the stem alone, for 2.6 % more of its multiply-adds in float.
Every op between those last layers and the outputs stays float too:
AnchorNet's attention pooling multiplies the logit maps by a spatial softmax
S whose values sit near 1/441, and quantizing that product's inputs to 8
bits over a range set by peaked maps rounded a diffuse S to zeros, so a
branch's probabilities came out uniform and the decided class fell to class 0.

Ranges are the mean of each calibration batch's minimum and maximum
(ONNX Runtime's moving-average MinMax) rather than the extremes over all
batches, which let a few outlying activations stretch the 256 levels. On
AnchorNet (120 held-out digits images) the two changes together took
branch-and-class agreement with FP32 from 59 % to 84 % and the mean
probability difference from 0.030 to 0.012; on the downstream network the
averaging moved Pipeline agreement by at most one image in 480 (95.8 / 95.8 %
on test images 120-599, 94.8 / 94.6 % on 0-479).
AnchorNet's INT8 decisions stay the weak part all the same (README,
Precision).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

log = logging.getLogger("anchor_edge")

#: ONNX op types left in float32.
UNQUANTIZED_OP_TYPES = ("Softmax",)
#: Layers with weights, the ones quantization makes integer.
COMPUTE_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: How many compute layers, from the input, stay float: the stem and the first bottleneck's two convolutions.
FLOAT_FIRST_LAYERS = 3

#: Calibration: MinMax per batch, averaged over the batches (ONNX Runtime's moving-average option).
CALIBRATION_METHOD = "MinMax, mean of per-batch ranges"
_CALIBRATION_OPTIONS = {"CalibMovingAverage": True}

#: quantize_static arguments per target, and how bundle.json describes them.
INT8_TARGETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "arguments": {
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "reduce_range": False,
            "extra_options": {**_CALIBRATION_OPTIONS, "ActivationSymmetric": False, "WeightSymmetric": True},
        },
        "seven_bit_convolutions": True,
        "activations": "uint8, asymmetric, per tensor",
        "weights": "int8, symmetric, per output channel; 7-bit (-64..64) in all but depthwise convolutions",
    },
    "tensorrt": {
        "arguments": {
            "activation_type": QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "reduce_range": False,
            "extra_options": {
                **_CALIBRATION_OPTIONS, "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
            },
        },
        "seven_bit_convolutions": False,
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
        model = onnx.load(str(prepared))
        _name_unnamed_nodes(model.graph)
        ends = float_ends(model.graph)
        unquantized = [n.name for n in model.graph.node if n.op_type in UNQUANTIZED_OP_TYPES]
        excluded = unquantized + ends.layers + ends.ops
        seven_bit = gemm_convolutions(model, excluded) if settings["seven_bit_convolutions"] else {}
        arguments = dict(settings["arguments"])
        arguments["extra_options"] = {  # per output channel (axis 0), as the other weights
            **arguments["extra_options"],
            "TensorQuantOverrides": {weight: [{"axis": 0, "reduce_range": True}] for weight in seven_bit.values()},
        }
        quantize_static(
            model, str(target), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            **arguments,
        )
    onnx.checker.check_model(str(target))
    log.info("quantized %s to INT8 for %s (%.1f MB)", source.name, int8_target, target.stat().st_size / 1e6)
    return {
        "format": "QDQ",
        "target": int8_target,
        "activations": settings["activations"],
        "weights": settings["weights"],
        "calibration_method": CALIBRATION_METHOD,
        "unquantized_op_types": list(UNQUANTIZED_OP_TYPES),
        "float_layers": ends.layers,
        "float_output_ops": ends.ops,
        "seven_bit_layers": list(seven_bit),
    }


class FloatEnds(NamedTuple):
    """The nodes INT8 leaves in float, by name, in graph order."""

    #: The first FLOAT_FIRST_LAYERS compute layers, and the last ones: those that reach a graph output through no
    #: other compute layer.
    layers: list[str]
    #: The other ops between those last layers and the outputs.
    ops: list[str]


def float_ends(graph: onnx.GraphProto) -> FloatEnds:
    """The first compute layers, then a walk back from the graph outputs to the first compute layer on each path."""
    producer = {output: node for node in graph.node for output in node.output}
    compute = [node for node in graph.node if node.op_type in COMPUTE_OP_TYPES]
    layers = {node.name for node in compute[:FLOAT_FIRST_LAYERS]}
    ops = set()
    stack, seen = [output.name for output in graph.output], set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in COMPUTE_OP_TYPES:
            layers.add(node.name)
        else:
            ops.add(node.name)
            stack.extend(node.input)
    return FloatEnds(
        [node.name for node in graph.node if node.name in layers], [node.name for node in graph.node if node.name in ops]
    )


def gemm_convolutions(model: onnx.ModelProto, excluded: list[str]) -> dict[str, str]:
    """{layer: weight name} of the quantized convolutions that are not depthwise, in graph order.

    Depthwise: more than one group and one input channel per group, the
    convolutions ONNX Runtime's CPU provider runs outside its U8S8 GEMM.
    Gemm and MatMul layers would run that GEMM too; in these networks they
    are the classifiers, which stay float (`float_ends`).
    """
    weight_shapes = {initializer.name: initializer.dims for initializer in model.graph.initializer}
    skipped = set(excluded)
    found = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in skipped or node.input[1] not in weight_shapes:
            continue
        groups = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        if groups == 1 or weight_shapes[node.input[1]][1] > 1:
            found[node.name] = node.input[1]
    return found


def _name_unnamed_nodes(graph: onnx.GraphProto) -> None:
    """Name unnamed nodes "<op>_<index>": the quantizer excludes nodes by name, and pre-processing leaves some unnamed."""
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"


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
