"""Optional box supervision of AnchorNet: a documented deviation from the paper (docs/method.md §1).

The paper trains AnchorNet on image-level labels alone. On this project's
2-core CPU budget that recipe stalls below the decided-class accuracy the
pipeline needs (docs/accuracy.md), so where the data has object boxes (the
digits benchmark does; a user's folder does not) training may also use them:

1. Attention: each branch's map S is pulled toward the cells whose window is
   centred on the object (cross-entropy against a Gaussian over cells,
   `TARGET_SIGMA` cells wide): attention pooling then reads the object.
2. Heatmap: each branch's logit map F classifies the label at the object's
   cell, and the label's map F[label] peaks there over space (cross-entropy
   of its spatial softmax against the same Gaussian), so LSP's hottest patch
   lies on the object. Without the second part the attention map found the
   digit for 95-98 % of test images but F[label] peaked on it for 28-62 %
   (the GAP loss lifts F everywhere), and the patches missed.
3. Branch by size: the branch of the object's natural receptive field is
   trained on hard labels, the others on smoothed ones (`SIZE_SMOOTHING`), so
   the decision rule's most confident branch follows the object's size.

Centre-only (a user's folder, where the downstream network as teacher gives
the object's centre but not its size, `export.training.teacher`): terms 1
and 2 need only the box's centre, so they run on the box (x, y, x, y); with
no size there is no natural branch, and every branch trains on hard labels
(docs/decisions/018-teacher-cam-supervision.md).

None of this changes the network or the runtime: the bundle is the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export.models.anchornet import BRANCH_RECEPTIVE_FIELDS, BRANCH_STRIDE, TrainingOutputs

#: Width of the attention target around the object's centre, in map cells (8 px each).
TARGET_SIGMA = 1.0
#: Probability mass the non-natural branches spread over the other classes.
SIZE_SMOOTHING = 0.3


def branch_targets(labels: Tensor, natural_branch: Tensor | None, num_classes: int) -> Tensor:
    """(N, 3, C) target distributions: one-hot on the natural branch, smoothed by SIZE_SMOOTHING on the others;
    one-hot on every branch when the size, hence the natural branch, is unknown (None)."""
    one_hot = (
        nn.functional.one_hot(labels, num_classes).float()[:, None, :].expand(-1, len(BRANCH_RECEPTIVE_FIELDS), -1)
    )
    if natural_branch is None:
        return one_hot
    smoothed = one_hot * (1 - SIZE_SMOOTHING) + SIZE_SMOOTHING / num_classes
    is_natural = nn.functional.one_hot(natural_branch, len(BRANCH_RECEPTIVE_FIELDS)).bool()[:, :, None]
    return torch.where(is_natural, one_hot, smoothed)


def attention_target(boxes: Tensor, field: int, height: int, width: int) -> Tensor:
    """(N, H, W) distribution over a branch's cells: a Gaussian around the cell centred on each box (only the box's
    centre is read).

    Cell (r, c) sees the input window [8c, 8c + field) x [8r, 8r + field)
    (docs/method.md §2), so its centre is at (8c + field / 2, 8r + field / 2).
    """
    centres = torch.arange(max(height, width), dtype=torch.float32) * BRANCH_STRIDE + field / 2
    box_x = (boxes[:, 0] + boxes[:, 2]) / 2
    box_y = (boxes[:, 1] + boxes[:, 3]) / 2
    spread = 2 * (TARGET_SIGMA * BRANCH_STRIDE) ** 2
    along_x = torch.exp(-((centres[None, :width] - box_x[:, None]) ** 2) / spread)
    along_y = torch.exp(-((centres[None, :height] - box_y[:, None]) ** 2) / spread)
    target = along_y[:, :, None] * along_x[:, None, :]
    return target / target.sum((1, 2), keepdim=True)


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of -sum(target * log_softmax(logits)) over the last axis."""
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


def box_loss(outputs: TrainingOutputs, labels: Tensor, boxes: Tensor, natural_branch: Tensor | None) -> Tensor:
    """Sum over branches of the attention term and the two heatmap terms (module docstring, 1 and 2); natural_branch
    None: centre-only, every branch on hard labels."""
    targets = branch_targets(labels, natural_branch, outputs.gap_logits.shape[-1])
    loss = outputs.gap_logits.new_zeros(())
    for branch, (field, logit_map, attention) in enumerate(
        zip(BRANCH_RECEPTIVE_FIELDS, outputs.logit_maps, outputs.attention_maps)
    ):
        height, width = logit_map.shape[2:]
        cells = attention_target(boxes.to(logit_map.device), field, height, width)
        loss = loss - (cells * attention[:, 0].clamp_min(1e-12).log()).sum((1, 2)).mean()
        at_object = (logit_map * cells[:, None]).sum((2, 3))
        loss = loss + soft_cross_entropy(at_object, targets[:, branch].to(logit_map.device))
        label_map = logit_map[torch.arange(len(labels)), labels.to(logit_map.device)].flatten(1)
        loss = loss + soft_cross_entropy(label_map, cells.flatten(1))
    return loss
