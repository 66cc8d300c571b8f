"""Export TensorFlow-style "SAME" padded convolutions as ONNX `auto_pad=SAME_UPPER`.

EfficientNet-Lite pads each convolution by an amount computed from the input
size at run time. Tracing freezes that amount at the example's size (224), so
the graph would pad a 63 px patch as if it were 224 px (logits off by 36,
measured). ONNX Conv can compute the same padding itself: SAME_UPPER puts the
odd pixel at the end, as TensorFlow does, and ONNX Runtime and TensorRT both
honour it for any input size. So after export each of these Conv nodes loses
the frozen Pad in front of it and gets `auto_pad=SAME_UPPER`; the export's
verification then checks every patch size against PyTorch.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import torch

from anchor_edge.errors import ExportError


def same_padding_convs(module: torch.nn.Module) -> dict[str, torch.nn.Conv2d]:
    """Name -> module of every dynamically SAME-padded convolution in `module` (EfficientNet-Lite's)."""
    try:
        from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding
    except ImportError:
        return {}
    return {name: conv for name, conv in module.named_modules() if isinstance(conv, Conv2dDynamicSamePadding)}


def mark_same_upper(onnx_path: Path, conv_names: list[str]) -> None:
    """Give the Conv nodes traced from `conv_names` auto_pad=SAME_UPPER, bypassing their frozen Pad nodes."""
    model = onnx.load(str(onnx_path))
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    # The TorchScript exporter scopes nodes by module path, keeping ModuleList indices:
    # "/_blocks.0/_depthwise_conv/Conv".
    wanted = {"/" + re.sub(r"\.(?!\d)", "/", name) + "/Conv" for name in conv_names}
    found = 0
    for node in graph.node:
        if node.op_type != "Conv" or node.name not in wanted:
            continue
        pad = producers.get(node.input[0])
        if pad is not None and pad.op_type == "Pad" and pad.name == node.name.replace("/Conv", "/Pad"):
            node.input[0] = pad.input[0]
        kept = [a for a in node.attribute if a.name not in ("pads", "auto_pad")]
        del node.attribute[:]
        node.attribute.extend(kept + [onnx.helper.make_attribute("auto_pad", "SAME_UPPER")])
        found += 1
    if found != len(conv_names):
        raise ExportError(
            f"found {found} of {len(conv_names)} SAME-padded Conv nodes in {onnx_path.name}; "
            "the exporter's node naming changed: update export/graph/same_padding.py"
        )
    _drop_unused_nodes(graph)
    onnx.save(model, str(onnx_path))


def _drop_unused_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is used (the bypassed Pads and their pad arithmetic)."""
    while True:
        used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [node for node in graph.node if not any(output in used for output in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
