"""Let a network trained on BGR take the RGB input every bundle feeds.

The runtime gives both models RGB (anchor_edge's preprocess converts once,
for AnchorNet and the downstream alike). A downstream trained on BGR (Caffe
and OpenCV pipelines) gets one Gather at the head of its graph that reverses
the channels, so the bundle needs no per-model channel order and TensorRT
sees an ordinary op; its mean and std are recorded in RGB order to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from anchor_edge.bundle.schema import INPUT_NAME

_REVERSED = "channels_reversed"


def take_rgb(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose input "image" is RGB, reversed to the BGR the original graph reads."""
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    graph = edited.graph
    for node in graph.node:
        node.input[:] = [_REVERSED if name == INPUT_NAME else name for name in node.input]
    graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_channel_indices"))
    graph.node.insert(
        0,
        helper.make_node(
            "Gather",
            [INPUT_NAME, "bgr_channel_indices"],
            [_REVERSED],
            axis=1,
            name="rgb_to_bgr",
        ),
    )
    onnx.checker.check_model(edited, full_check=True)
    return edited


def in_rgb_order(values: Sequence[float], channel_order: str) -> tuple[float, float, float]:
    """Per-channel values given in the network's `channel_order`, in the RGB order the bundle records."""
    ordered = tuple(values)
    return ordered[::-1] if channel_order == "BGR" else ordered  # type: ignore[return-value]
