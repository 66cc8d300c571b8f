"""Multiply-adds of an ONNX graph, for downstream networks that come without an eager PyTorch module.

The same convention as export/models/flops.py (convolutions and
fully-connected layers only: Conv, Gemm, MatMul), read off the shapes ONNX
shape inference gives for one square image, so an ONNX file or TorchScript
network gets the per-size costs the runtime's budget needs.
"""

from __future__ import annotations

import math

import onnx

from anchor_edge.bundle.schema import INPUT_NAME
from anchor_edge.errors import ExportError


def count_onnx_multiply_adds(model: onnx.ModelProto, input_size: int) -> int:
    """Multiply-adds of one `input_size` x `input_size` image through `model` (input "image", NCHW).

    Conv: output elements * in_channels / groups * kh * kw (the weight's
    shape past its first axis); Gemm and MatMul: output elements * the
    shared dimension.
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    image = next(i for i in fixed.graph.input if i.name == INPUT_NAME)
    for dim, value in zip(image.type.tensor_type.shape.dim, (1, 3, input_size, input_size)):
        dim.Clear()
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = {init.name: list(init.dims) for init in inferred.graph.initializer}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        out, first, second = shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1])
        if not out or not first or not second or None in out or None in first or None in second:
            raise ExportError(
                f"cannot count multiply-adds of node {node.name!r} ({node.op_type}): shapes unknown at {input_size} px"
            )
        if node.op_type == "Conv":
            per_output = math.prod(second[1:])
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            per_output = first[0] if trans_a else first[-1]
        else:
            per_output = first[-1]
        total += math.prod(out) * per_output
    return total
