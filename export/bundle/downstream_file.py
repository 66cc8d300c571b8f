"""Write the bundle's downstream.onnx from any downstream source, verified, with what bundle.json records of it.

A PyTorch module (torchvision, timm, a factory, TorchScript, a pickled or
in-memory module) is exported and compared with itself at every runtime
size. An ONNX file's edited graph is compared with the original file at the
sizes the original accepts (a file fixed at 224 px: at 224; its other sizes
were run when it was loaded, export/models/onnx_source.py). A network
trained on BGR gets a channel reversal at the head of its graph
(export/graph/channel_order.py) and is compared with the original fed BGR.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch

from anchor_edge.bundle.precision_records import Verification
from anchor_edge.bundle.schema import LOGITS_OUTPUT
from export.graph.channel_order import in_rgb_order, take_rgb
from export.graph.onnx_export import export_downstream
from export.graph.onnx_flops import count_onnx_multiply_adds
from export.graph.verify import photo_crops, torch_reference, verify
from export.models.downstream import Downstream
from export.models.flops import count_multiply_adds


class DownstreamFile(NamedTuple):
    """What bundle.json says about the written downstream.onnx: its check, costs per size, size,
    normalisation in RGB."""

    verification: Verification
    multiply_adds: dict[int, int]
    parameters: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def write_downstream(
    downstream: Downstream, path: Path, crops: np.ndarray, *, sizes: tuple[int, ...], tolerance: float
) -> DownstreamFile:
    """Write `downstream` as `path` (input "image" RGB, dynamic batch, height and width; output "logits")
    and verify it."""
    bgr = downstream.channel_order == "BGR"
    mean, std = (
        in_rgb_order(downstream.mean, downstream.channel_order),
        in_rgb_order(downstream.std, downstream.channel_order),
    )
    source = downstream.onnx_source
    if source is not None:
        onnx.save(take_rgb(source.model) if bgr else source.model, str(path))

        def original(batch: np.ndarray) -> list[np.ndarray]:
            return source.run_original(np.ascontiguousarray(batch[:, ::-1]) if bgr else batch)

        compared = tuple(size for size in sizes if source.accepts(size)) or tuple(s for s in source.fixed_size if s)[:1]
        verification = verify(
            original,
            path,
            crops if max(compared) <= crops.shape[1] else photo_crops(max(compared)),
            mean=mean,
            std=std,
            sizes=compared,
            top1_output=LOGITS_OUTPUT,
            tolerance=tolerance,
            against=f"the original {source.path.name}",
        )
        parameters = sum(int(np.prod(init.dims)) for init in source.model.graph.initializer)
        multiply_adds = _graph_multiply_adds(path, sizes)
    else:
        assert downstream.module is not None, "a Downstream holds a module or an ONNX source"
        export_downstream(downstream.module, path)
        if bgr:
            onnx.save(take_rgb(onnx.load(str(path))), str(path))
        verification = verify(
            torch_reference(downstream.module, reverse_channels=bgr),
            path,
            crops,
            mean=mean,
            std=std,
            sizes=sizes,
            top1_output=LOGITS_OUTPUT,
            tolerance=tolerance,
        )
        parameters = sum(p.numel() for p in downstream.module.parameters())
        if isinstance(downstream.module, torch.jit.ScriptModule):  # no eager layers to hook
            multiply_adds = _graph_multiply_adds(path, sizes)
        else:
            multiply_adds = {size: count_multiply_adds(downstream.module, size) for size in sizes}
    return DownstreamFile(verification, multiply_adds, parameters, mean, std)


def _graph_multiply_adds(path: Path, sizes: tuple[int, ...]) -> dict[int, int]:
    graph = onnx.load(str(path))
    return {size: count_onnx_multiply_adds(graph, size) for size in sizes}
