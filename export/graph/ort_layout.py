"""Rewrite AnchorNet's exported graph so ONNX Runtime's blocked CPU layout survives it, values unchanged.

Why: ONNX Runtime runs convolutions on CPU in a blocked layout (NCHWc) and
converts back to plain NCHW around every node it cannot run blocked. Its
profiler showed about a fifth of AnchorNet's kernel time in those
conversions (ReorderOutput / ReorderInput), from two places:

* Residual center crops (docs/method.md §1: padding-0 depthwise convs shrink the
  map by k - 1, so the skip is cropped by c = (k - 1) / 2 per side). PyTorch
  exports them as two Slice nodes, which have no blocked kernel. A crop is
  exactly a depthwise (2c+1)x(2c+1) convolution, padding 0, whose kernel is 1
  at the centre and 0 elsewhere: out[y, x] = 1 * in[y + c, x + c] + sum of
  0 * others, exact in floating point for finite inputs. It stays blocked,
  and so does the residual Add after it. Cost: (2c+1)^2 multiply-adds per
  skip element, under 0.3 % of AnchorNet's total.
* Squeeze-excite gates: x * g with g of shape (N, C, 1, 1). ONNX Runtime runs
  a Mul blocked only when both inputs provably have the same shape, so the
  broadcast multiply converted the whole expanded feature map to NCHW and
  back, twice per SE block (twelve blocks). The rewrite repeats g over the
  map with a nearest-neighbour Resize (integer scales, asymmetric, floor:
  every output pixel reads g's only pixel, so the values are g's exactly) and
  declares its shape, so the Mul runs blocked on equal shapes.

The PyTorch definition (which mirrors the paper's tables) is untouched; only
the exported graph changes, and the export's verification against PyTorch
still runs on the rewritten file. The rewritten nodes are named
".../center_crop" and ".../gate_full" so a quantizer can find them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

log = logging.getLogger("anchor_edge")

SPATIAL_AXES = (2, 3)


def keep_blocked_layout(path: Path) -> dict[str, int]:
    """Apply both rewrites to the ONNX file at `path` in place; returns how many nodes each rewrote.

    The file is re-checked with onnx.checker (full check) when anything changed.
    """
    model = onnx.load(str(path))
    counts = {"center_crops": rewrite_center_crops(model), "se_gates": rewrite_se_gates(model)}
    if any(counts.values()):
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        log.info(
            "%s: %d residual crop(s) as one-hot convs, %d SE gate(s) repeated over the map",
            path.name,
            counts["center_crops"],
            counts["se_gates"],
        )
    return counts


def rewrite_center_crops(model: onnx.ModelProto) -> int:
    """Replace each Slice(H) -> Slice(W) symmetric center crop by a one-hot depthwise Conv; returns the count."""
    graph = model.graph
    shapes = _shapes(model)
    constants = _constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()
    for first in graph.node:
        crop = _crop_pixels(first, constants, axis=SPATIAL_AXES[0])
        after = consumers.get(first.output[0], []) if first.op_type == "Slice" else []
        if crop is None or len(after) != 1 or _crop_pixels(after[0], constants, axis=SPATIAL_AXES[1]) != crop:
            continue
        second, shape = after[0], shapes.get(first.input[0], ())
        width = shape[1] if len(shape) == 4 else None
        if not isinstance(width, int) or first.output[0] in {o.name for o in graph.output}:
            continue
        side = 2 * crop + 1
        kernel = np.zeros((width, 1, side, side), np.float32)
        kernel[:, 0, crop, crop] = 1.0
        kernel_name = f"{second.output[0]}/center_crop_kernel"
        graph.initializer.append(numpy_helper.from_array(kernel, kernel_name))
        replaced[id(second)] = helper.make_node(
            "Conv",
            [first.input[0], kernel_name],
            list(second.output),
            name=f"{second.output[0]}/center_crop",
            group=width,
            kernel_shape=[side, side],
            pads=[0, 0, 0, 0],
            strides=[1, 1],
        )
        dropped.add(id(first))
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_constants(graph)
    return len(replaced)


def rewrite_se_gates(model: onnx.ModelProto) -> int:
    """Turn each Mul(x, HardSigmoid gate of shape (N, C, 1, 1)) into Mul(x, gate repeated to x's shape)."""
    graph = model.graph
    shapes = _shapes(model)
    producers = {name: node for node in graph.node for name in node.output}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        features, gate = node.input
        if getattr(producers.get(gate), "op_type", None) != "HardSigmoid":
            features, gate = gate, features
        if getattr(producers.get(gate), "op_type", None) != "HardSigmoid":
            continue
        feature_shape, gate_shape = shapes.get(features), shapes.get(gate)
        if feature_shape is None or gate_shape is None or len(feature_shape) != 4 or list(gate_shape[2:]) != [1, 1]:
            continue
        batch, channels, height, width = feature_shape
        if not all(isinstance(d, int) for d in (channels, height, width)):
            continue
        scales, full = f"{node.output[0]}/gate_scales", f"{node.output[0]}/gate_full"
        graph.initializer.append(numpy_helper.from_array(np.array([1, 1, height, width], np.float32), scales))
        graph.value_info.append(
            helper.make_tensor_value_info(full, TensorProto.FLOAT, [batch, channels, height, width])
        )
        replaced[id(node)] = [
            helper.make_node(
                "Resize",
                [gate, "", scales],
                [full],
                name=full,
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            ),
            helper.make_node("Mul", [features, full], list(node.output), name=node.name),
        ]
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def _crop_pixels(node: onnx.NodeProto, constants: dict[str, np.ndarray], *, axis: int) -> int | None:
    """c when `node` is Slice(starts=c, ends=-c, axes=axis, steps=1) with c > 0, else None."""
    if node.op_type != "Slice" or len(node.input) != 5:
        return None
    values = [constants.get(name) for name in node.input[1:]]
    if any(v is None or v.size != 1 for v in values):
        return None
    starts, ends, axes, steps = (int(v.reshape(-1)[0]) for v in values)
    if axes != axis or steps != 1 or starts <= 0 or ends != -starts:
        return None
    return starts


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Every tensor's inferred shape: ints where known, dim_param names for symbolic axes, else None."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    return shapes


def _drop_unused_constants(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
