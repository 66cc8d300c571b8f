"""Float32 ONNX model -> INT8 QDQ model, calibrated on real inputs.

TensorRT 11 has no INT8 calibrator: INT8 must be in the ONNX graph, as
QuantizeLinear/DequantizeLinear (QDQ) pairs, and a strongly typed engine
follows them. ONNX Runtime's `quantize_static` writes those pairs; which
integer types to use depends on who runs the graph, so the target is a
choice recorded in bundle.json:

- ``cpu`` (ONNX Runtime's CPU provider): uint8 activations, int8 weights
  (U8S8), the types of x86's fast integer kernels. Without VNNI those
  kernels add pairs of uint8 x int8 products in 16 bits, which saturates
  past 32767 (255 x 127 x 2 = 64770). So the convolutions they run, all but
  depthwise ones (those have a kernel of their own), get 7-bit weights
  (-64..64, ONNX Runtime's `reduce_range` set per layer): 255 x 64 x 2 =
  32640 cannot saturate, on any CPU. Depthwise convolutions keep 8 bits.
- ``tensorrt``: TensorRT takes only symmetric signed INT8 (zero point 0), for
  activations and weights alike, and no quantized bias (biases stay float).

Both quantize weights per output channel. Softmax is never quantized: its
quantized form uses a fixed output scale of 1/256, which rounds small class
probabilities to exact zeros and breaks the branch decision.

The first compute layers (the stem and the first bottleneck) and the last
ones, those that write the logits, stay float (`float_ends`), with every op
between those last layers and the outputs: most of the error that reaches
the logits is made at the ends, and AnchorNet's attention pooling multiplies
by a spatial softmax whose values 8 bits cannot hold. Ranges are the mean of
each calibration batch's minimum and maximum (moving-average MinMax), so a
few outlying activations do not stretch the 256 levels.

Why each rule, with the measurements: docs/decisions/003-int8-float-layers-and-calibration-ranges.md
and docs/decisions/004-seven-bit-weights.md; results in docs/precision.md.
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

from anchor_edge.bundle.choices import Int8Target
from anchor_edge.bundle.precision_records import Int8Record
from anchor_edge.errors import InputError

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
                **_CALIBRATION_OPTIONS,
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
        },
        "seven_bit_convolutions": False,
        "activations": "int8, symmetric (zero point 0), per tensor",
        "weights": "int8, symmetric (zero point 0), per output channel; biases float",
    },
}


def quantize_to_int8(source: Path, target: Path, reader: CalibrationDataReader, *, int8_target: str) -> Int8Record:
    """Write the INT8 QDQ version of `source` to `target`, calibrated by `reader`; return the bundle.json record.

    The model first goes through ONNX Runtime's quantization pre-processing
    (graph cleanup and ONNX shape inference), as its quantizer expects. Its
    symbolic shape inference (meant for transformers' dynamic dimensions) is
    skipped: it gives up on AnchorNet's squeeze-excite gates, exported as a
    Resize of the gate over the map (export/graph/ort_layout.py).

    Raises:
        ValueError: `int8_target` is not "cpu" or "tensorrt".

    Example:
        >>> quantize_to_int8(Path("downstream.onnx"), Path("downstream.int8.onnx"), reader, int8_target="cpu").format
        'QDQ'
    """
    if int8_target not in INT8_TARGETS:
        raise InputError(f"unknown --int8-target {int8_target!r}; choose one of {sorted(INT8_TARGETS)}")
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
            model,
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            **arguments,
        )
    onnx.checker.check_model(str(target))
    log.info("quantized %s to INT8 for %s (%.1f MB)", source.name, int8_target, target.stat().st_size / 1e6)
    return Int8Record(
        format="QDQ",
        target=Int8Target(int8_target),
        activations=settings["activations"],
        weights=settings["weights"],
        calibration_method=CALIBRATION_METHOD,
        unquantized_op_types=tuple(UNQUANTIZED_OP_TYPES),
        float_layers=tuple(ends.layers),
        float_output_ops=tuple(ends.ops),
        seven_bit_layers=tuple(seven_bit),
    )


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
        [node.name for node in graph.node if node.name in layers],
        [node.name for node in graph.node if node.name in ops],
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
    """Name unnamed nodes "<op>_<index>": the quantizer excludes nodes by name, and pre-processing leaves
    some unnamed."""
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
