"""PyTorch -> ONNX, with the shapes the runtime and TensorRT expect.

AnchorNet always sees the 224x224 network input, so only its batch is
dynamic. The downstream network classifies patches of 63, 95 and 111 px and
the 224 px full image, so its batch, height and width are all dynamic.
Every file passes `onnx.checker` with the full (shape-inferring) check.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import onnx
import torch

from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from export.graph.ort_layout import keep_blocked_layout
from export.graph.same_padding import mark_same_upper, same_padding_convs

log = logging.getLogger("anchor_edge")

OPSET = 17


def export_anchornet(model: torch.nn.Module, path: Path, output_names: Sequence[str], *, size: int = 224) -> None:
    """Export AnchorNet with a dynamic batch axis and fixed `size` x `size` input.

    Residual crops and SE gates are then rewritten with the same values so
    ONNX Runtime's blocked CPU layout survives them (see ort_layout).
    """
    dynamic = {INPUT_NAME: {0: "batch"}} | {name: {0: "batch"} for name in output_names}
    _export(model, torch.zeros(1, 3, size, size), path, list(output_names), dynamic)
    keep_blocked_layout(path)


def export_downstream(model: torch.nn.Module, path: Path, *, size: int = 224) -> None:
    """Export a classifier with dynamic batch, height and width; its one output is `logits`.

    TensorFlow-style SAME convolutions (EfficientNet-Lite) become ONNX
    auto_pad=SAME_UPPER so their padding follows the patch size (see same_padding).
    """
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, LOGITS_OUTPUT: {0: "batch"}}
    same = same_padding_convs(model)
    _export(model, torch.zeros(1, 3, size, size), path, [LOGITS_OUTPUT], dynamic, check=not same)
    if same:
        mark_same_upper(path, list(same))
        onnx.checker.check_model(str(path), full_check=True)


def _export(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    output_names: list[str],
    dynamic: dict,
    check: bool = True,
) -> None:
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, but it gives
        # plain graphs with named dynamic axes that TensorRT parses directly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    if check:
        onnx.checker.check_model(str(path), full_check=True)
    log.info("exported %s (opset %d, %.1f MB)", path.name, OPSET, path.stat().st_size / 1e6)
