"""A cost budget per image: cap the downstream's multiply-adds at a share of the full image's.

The method saves compute only if the patches cost less than the whole image
(docs/method.md §6). A budget b makes that a guarantee: each image's patches
are taken in LSP order (most activated first) while their summed
multiply-adds stay within b x the downstream's cost on the whole crop; the
rest are dropped. bundle.json records the downstream's multiply-adds per
input size (models.downstream.multiply_adds), so the cap is exact, not an
estimate. With early exit the budget is the ceiling and early exit may stop
sooner.

Every image must be able to afford its first patch, or it would have no
answer: a budget below the costliest patch size's share is refused, naming
the smallest budget this bundle allows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from anchor_edge.errors import InputError

if TYPE_CHECKING:
    from anchor_edge.bundle import Bundle


def patch_costs(multiply_adds: Mapping[int, int], patch_sizes: Sequence[int], crop: int) -> tuple[dict[int, int], int]:
    """({patch size: multiply-adds}, full-image multiply-adds) from the downstream's bundle.json entry."""
    missing = [size for size in (*patch_sizes, crop) if size not in multiply_adds]
    if missing:
        raise InputError(
            f"bundle.json has no downstream multiply-adds for size(s) {missing}; re-export the bundle to use a budget"
        )
    return {size: int(multiply_adds[size]) for size in patch_sizes}, int(multiply_adds[crop])


def bundle_costs(bundle: "Bundle") -> tuple[dict[int, int], int]:
    """`patch_costs` of a bundle's branches and crop: what a budget, or a report of multiply-adds, reads."""
    return patch_costs(bundle.downstream.multiply_adds, [b.receptive_field for b in bundle.branches], bundle.crop)


def check_budget(budget: float | None, costs: Mapping[int, int], full: int) -> float | None:
    """Validate a budget: None (no cap) or a share of the full image at least the costliest patch's share."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget):
        raise InputError(f"budget must be None or a finite number, got {budget!r}")
    smallest = max(costs.values()) / full
    if budget < smallest:
        raise InputError(
            f"budget {budget} cannot pay for one {max(costs, key=costs.get)} px patch; this bundle needs a budget "
            f"of at least {math.ceil(smallest * 1000) / 1000:.3f} (of the full image's multiply-adds)"  # rounded up
        )
    return float(budget)


def within_budget(boxes: Sequence[np.ndarray], costs: Mapping[int, int], cap: float) -> list[np.ndarray]:
    """Each image's boxes, in order, up to the last one whose running multiply-adds stay <= cap, and the first in
    any case: `check_budget` lets every budget pay for one patch, and cap = budget x full may round a hair below it.

    Example:
        >>> costs = {63: 30, 95: 70}
        >>> boxes = [np.array([[0, 0, 63, 63], [8, 0, 71, 63], [16, 0, 79, 63]]), np.array([[0, 0, 95, 95]] * 2)]
        >>> [len(b) for b in within_budget(boxes, costs, cap=70)]
        [2, 1]
    """
    kept = []
    for image_boxes in boxes:
        sizes = image_boxes[:, 2] - image_boxes[:, 0]
        spent = np.cumsum([costs[int(size)] for size in sizes])
        kept.append(image_boxes[: max(1, int(np.searchsorted(spent, cap, side="right")))])
    return kept


def savings_note(anchornet_cost: int, full: int) -> tuple[bool, str]:
    """(whether the method can save multiply-adds, a plain sentence saying so) for a bundle's two models.

    The pipeline costs AnchorNet plus its patches; the full image costs the
    downstream once. So the most the method can save is the downstream's full
    image minus AnchorNet, and when AnchorNet alone costs as much, no budget
    makes the pipeline cheaper: a heavier downstream is what the method is for.
    """
    share = anchornet_cost / full
    if share >= 1:
        return False, (
            f"AnchorNet alone costs {anchornet_cost / 1e6:.0f} M multiply-adds, "
            f"{share:.2f}x the downstream's full image "
            f"({full / 1e6:.0f} M): the pipeline cannot be cheaper than the full image; use a heavier downstream"
        )
    return True, (
        f"AnchorNet costs {share:.2f}x the downstream's full image ({anchornet_cost / 1e6:.0f} of {full / 1e6:.0f} M "
        f"multiply-adds): the pipeline is cheaper while its patches cost under {1 - share:.2f}x the full image"
    )
