"""From AnchorNet's outputs to patches: decide, select boxes, cut them grouped by size.

The method's middle step (docs/method.md §3-§5) is the same wherever it runs:
the runtime Pipeline, INT8 calibration of the downstream network, patch
fine-tuning in PyTorch, and the GPU benchmark. It lives here once, so all of
them choose the very boxes the runtime chooses. Inputs are plain arrays
keyed by the bundle's output names; cutting works on anything that slices
like a (C, H, W) array (numpy, or torch tensors with `stack=torch.stack`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from anchor_edge.bundle.choices import BranchRule, Heatmap
from anchor_edge.bundle.schema import PROBS_OUTPUT, Branch
from anchor_edge.method.decision import decide
from anchor_edge.method.lsp import LSPParams, select_patches


class Located(NamedTuple):
    """What AnchorNet decided for one image: its class, the chosen branch's index, and the boxes LSP took."""

    class_id: int
    branch: int
    boxes: np.ndarray


def locate(
    outputs: Mapping[str, np.ndarray],
    branches: Sequence[Branch],
    lsp: Mapping[int, LSPParams],
    vote_min: int,
    *,
    branch_rule: str = BranchRule.CONFIDENT,
    heatmap: str = Heatmap.CLASS,
    every_branch: bool = False,
) -> list[Located]:
    """Decide each image's class and branch, then run LSP on the branch's heatmap.

    Args:
        outputs: AnchorNet's outputs for a batch: "probs" (N, 3, C) and each branch's map (N, C, H, W).
        branches: the bundle's branches, in output order.
        lsp: LSP parameters per patch size.
        vote_min: branches that must agree on a class (docs/method.md §3).
        branch_rule: how the branch is chosen, "confident" (eq. 8) or "widest" (`BranchRule`).
        heatmap: which map of it LSP reads, "class" (F[class]) or "max" (max over classes of F) (`Heatmap`).
        every_branch: also take the decided class's boxes from the other two
            branches (after the chosen one's), so that every patch size is seen,
            as calibration needs.

    Returns:
        One Located per image; `boxes` is (n, 4) int [x0, y0, x1, y1) in network-input pixels.
    """
    decisions = decide_all(outputs, vote_min, branch_rule)
    boxes = select_all(outputs, decisions, branches, lsp, heatmap=heatmap, every_branch=every_branch)
    return [Located(class_id, branch, image_boxes) for (class_id, branch), image_boxes in zip(decisions, boxes)]


def decide_all(
    outputs: Mapping[str, np.ndarray], vote_min: int, branch_rule: str = BranchRule.CONFIDENT
) -> list[tuple[int, int]]:
    """(class_id, branch index) of every image of the batch (docs/method.md §3)."""
    return [decide(probs, vote_min, branch_rule) for probs in np.asarray(outputs[PROBS_OUTPUT])]


def select_all(
    outputs: Mapping[str, np.ndarray],
    decisions: Sequence[tuple[int, int]],
    branches: Sequence[Branch],
    lsp: Mapping[int, LSPParams],
    *,
    heatmap: str = Heatmap.CLASS,
    every_branch: bool = False,
) -> list[np.ndarray]:
    """Each image's boxes on its heatmap: the chosen branch's (then the others', with every_branch)."""
    selected = []
    for index, (class_id, branch) in enumerate(decisions):
        order = [branch] + ([b for b in range(len(branches)) if b != branch] if every_branch else [])
        boxes = [select_boxes(outputs, index, class_id, branches[b], lsp, heatmap) for b in order]
        selected.append(np.concatenate(boxes) if len(boxes) > 1 else boxes[0])
    return selected


def select_boxes(
    outputs: Mapping[str, np.ndarray],
    index: int,
    class_id: int,
    branch: Branch,
    lsp: Mapping[int, LSPParams],
    heatmap: str = Heatmap.CLASS,
) -> np.ndarray:
    """LSP on image `index`'s heatmap of `branch` (`branch_heatmap`): (n, 4) boxes in LSP order."""
    params = lsp[branch.receptive_field]
    heat = branch_heatmap(outputs, index, class_id, branch, heatmap)
    return select_patches(heat, branch.receptive_field, branch.stride, **params._asdict())


def branch_heatmap(
    outputs: Mapping[str, np.ndarray], index: int, class_id: int, branch: Branch, heatmap: str = Heatmap.CLASS
) -> np.ndarray:
    """The (H, W) map LSP reads on image `index`: F[class_id] of `branch`, or its maximum over classes (`Heatmap`)."""
    maps = outputs[branch.map_output]
    return np.asarray(maps[index]).max(axis=0) if heatmap == Heatmap.MAX else np.asarray(maps[index, class_id])


def check_heatmap(heatmap: object) -> Heatmap:
    """The choice as its enum, or an InputError naming the heatmaps there are."""
    return Heatmap.checked(heatmap, "heatmap")


def group_by_size(boxes: Sequence[np.ndarray]) -> dict[int, list[tuple[int, int]]]:
    """{patch size: [(image index, box index), ...]} over every box of every image, sizes ascending."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for image_index, image_boxes in enumerate(boxes):
        for box_index, (x0, _, x1, _) in enumerate(image_boxes):
            groups.setdefault(int(x1 - x0), []).append((image_index, box_index))
    return dict(sorted(groups.items()))


def cut(image_chw: Any, box: Sequence[int]) -> Any:
    """The box [x0, y0, x1, y1) of a (C, H, W) image, at native size (a view, not a copy)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return image_chw[:, y0:y1, x0:x1]


def cut_by_size(
    images_chw: Any, boxes: Sequence[np.ndarray], *, stack: Callable[[list[Any]], Any] = np.stack
) -> dict[int, tuple[list[tuple[int, int]], Any]]:
    """Every box cut from its image, one stacked batch per patch size: {size: (members, (n, C, size, size))}.

    Example:
        >>> images = np.zeros((2, 3, 224, 224), np.float32)
        >>> groups = cut_by_size(images, [np.array([[0, 0, 63, 63]]), np.array([[8, 8, 71, 71], [0, 0, 95, 95]])])
        >>> {size: (members, batch.shape) for size, (members, batch) in groups.items()}
        {63: ([(0, 0), (1, 0)], (2, 3, 63, 63)), 95: ([(1, 1)], (1, 3, 95, 95))}
    """
    return {
        size: (members, stack([cut(images_chw[i], boxes[i][j]) for i, j in members]))
        for size, members in group_by_size(boxes).items()
    }
