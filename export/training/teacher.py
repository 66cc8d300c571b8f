"""The downstream network as AnchorNet's teacher: where in an image it sees the label's class, from one forward pass.

A folder of images has labels but no boxes, and box supervision
(`export.training.box_supervision`) needs to know where the object is. A
trained downstream network already knows: for a network that ends in global
average pooling and a linear classifier (ResNet, EfficientNet, ...), class
c's logit is mean over cells of M_c + b_c with M_c = sum_k W[c, k] A_k, A the
last feature map and W the classifier's weights. M_c, the class activation map
(CAM, Zhou et al. 2016), is then exactly each cell's share of the logit, not an
approximation, and a batch of images costs one forward pass.

Measured on the digits benchmark (issue #27): the trained full-image
EfficientNet-Lite0's CAM for the true class peaks within half a cell of the
digit's box on 96 % of test draws, but its extent is the same at every digit
size. So the teacher gives the object's centre, not its size
(docs/decisions/018-teacher-cam-supervision.md).

The head is found by hooks on whichever `nn.AdaptiveAvgPool2d` and
`nn.Linear` run last, and every call checks that the pooled map through the
classifier gives the network's own logits; a head that is something else is
refused rather than read wrongly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from anchor_edge.errors import InputError

#: How far the pooled CAM may stray from the network's logits, relative to the largest logit: float32 sums, and
#: bfloat16 ones (8-bit mantissa) under autocast. A head that is not pooling + linear misses by far more than either.
EXACTNESS_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2}


class Teacher:
    """Class activation maps of a trained classifier whose head is global average pooling + a linear layer."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module.eval()
        self.name = name
        self._pools = [m for m in module.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        self._linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not self._pools or not self._linears:
            raise self._not_a_cam_head("it has no nn.AdaptiveAvgPool2d and nn.Linear")

    @torch.no_grad()
    def maps(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, h, w) CAM of each image's label, on the network's last feature map, from normalized inputs (N, 3, H, W).

        Raises:
            InputError: the network's head is not global average pooling + linear (the CAM would not be exact).
        """
        features: list[torch.Tensor] = []
        classifiers: list[nn.Linear] = []
        handles = [pool.register_forward_pre_hook(lambda _, args: features.append(args[0])) for pool in self._pools]
        handles += [linear.register_forward_hook(lambda m, *_: classifiers.append(m)) for linear in self._linears]
        try:
            logits = self.module(inputs)
        finally:
            for handle in handles:
                handle.remove()
        if not features or not classifiers:
            raise self._not_a_cam_head("its forward pass ran no nn.AdaptiveAvgPool2d or no nn.Linear")
        with torch.autocast(inputs.device.type, enabled=False):  # check and map in float32, whatever ran the net
            tolerance = EXACTNESS_TOLERANCE.get(logits.dtype, EXACTNESS_TOLERANCE[torch.float32])
            feature_map, classifier = features[-1].float(), classifiers[-1]
            weight = classifier.weight.float()
            if feature_map.dim() != 4 or feature_map.shape[1] != weight.shape[1] or logits.shape[-1] != weight.shape[0]:
                raise self._not_a_cam_head(
                    f"its last pooled map {tuple(feature_map.shape)} does not feed its classifier {tuple(weight.shape)}"
                )
            pooled = feature_map.mean((2, 3)) @ weight.T
            if classifier.bias is not None:
                pooled = pooled + classifier.bias.float()
            error = (pooled - logits.float()).abs().max().item()
            if error > tolerance * max(1.0, logits.abs().max().item()):
                raise self._not_a_cam_head(
                    f"its pooled last feature map through its classifier misses its logits by {error:.3g}"
                )
            return torch.einsum("nkhw,nk->nhw", feature_map, weight[labels])

    def _not_a_cam_head(self, why: str) -> InputError:
        return InputError(
            f"downstream {self.name} cannot teach AnchorNet: {why}, and the class activation map is exact only for a "
            "network ending in global average pooling and a linear classifier (ResNet, EfficientNet, ...); "
            "give a network with such a head"
        )


def peak_in(cam: np.ndarray, square: int, top: int, left: int, size: int, mirrored: bool) -> tuple[float, float]:
    """(x, y) of the CAM's peak within a size x size crop at (top, left) of the square it was computed on.

    The map (h, w) lies on the square x square input with cell centres at
    (j + 0.5) * square / w. The peak is the hottest cell whose centre lies in
    the crop, moved to the centroid of its 3 x 3 neighbourhood weighted by how
    far each cell stands above the map's median: a 7 x 7 map's cells are 32 px
    wide on 224, and the hottest cell alone placed the object's centre a
    median 25 px off on the fashion folder's small products (inside their box
    for 24 % of them; the centroid 13 px and 70 %, decision record 027).
    Returned in crop pixels, clipped to the crop's pixel centres, mirrored
    when the crop was, so it lands where the sample shows the object.
    """
    cam = np.asarray(cam, np.float32)
    height, width = cam.shape
    centres_y = (np.arange(height) + 0.5) * square / height
    centres_x = (np.arange(width) + 0.5) * square / width
    rows_in = (centres_y >= top) & (centres_y < top + size)
    cols_in = (centres_x >= left) & (centres_x < left + size)
    in_crop = rows_in[:, None] & cols_in[None, :]
    row, col = np.unravel_index(int(np.where(in_crop, cam, -np.inf).argmax()), cam.shape)
    rows, cols = slice(max(0, row - 1), row + 2), slice(max(0, col - 1), col + 2)
    weights = np.clip(cam[rows, cols] - np.median(cam), 0, None)
    if weights.sum() > 0:
        y = float((weights.sum(1) * centres_y[rows]).sum() / weights.sum())
        x = float((weights.sum(0) * centres_x[cols]).sum() / weights.sum())
    else:  # nothing above the median around the peak (a flat map): the hottest cell's own centre
        y, x = float(centres_y[row]), float(centres_x[col])
    x = min(max(x - left, 0.5), size - 0.5)  # within the crop's pixel centres, which mirroring maps onto themselves
    y = min(max(y - top, 0.5), size - 0.5)
    return (size - x if mirrored else x), y
