"""Multiply-add counting for any nn.Module, from the shapes a real forward pass produces.

The paper's cost figures (AnchorNet 0.5 GFLOPs, ResNet-50 4.1 GFLOPs; SPEC
section 6) follow the usual convention: multiply-adds of convolutions and
fully-connected layers only (batch norm, activations, pooling and element-wise
ops are left out). Counting with forward hooks on the layers that actually run
keeps the figure independent of how a model wires them, so the same function
serves AnchorNet and the downstream networks in the benchmarks.
"""

from __future__ import annotations

import torch
from torch import nn

from anchor_edge.checks import positive_int


def count_multiply_adds(model: nn.Module, input_size: int = 224) -> int:
    """Multiply-adds of one forward pass of a single square RGB image.

    Conv2d: output elements * in_channels / groups * kh * kw; Linear: output
    elements * in_features. Only layers that run count (AnchorNet with
    pooling="gap" skips its attention branches). The model is run in eval mode
    and restored to its previous mode.

    Args:
        model: any module taking an (N, 3, H, W) tensor.
        input_size: height and width of the image in pixels.

    Returns:
        Multiply-adds per image.

    Example:
        >>> count_multiply_adds(nn.Conv2d(3, 8, 3), input_size=10)  # 8*8*8 outputs, 27 each
        13824
    """
    positive_int("input_size", input_size)
    total = 0

    def count(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        else:
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    reference = next(model.parameters(), None)
    image = torch.zeros(
        1,
        3,
        input_size,
        input_size,
        dtype=reference.dtype if reference is not None else torch.float32,
        device=reference.device if reference is not None else "cpu",
    )
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
