"""AnchorNet's vote: its decided branch's class distribution, weighted, added to the summed patch softmax.

The paper's image class is the argmax of the sum of the patches' softmax
(docs/method.md §5); AnchorNet's own class only chooses the heatmap. Where
AnchorNet classifies better than the patches do (a downstream that sees one
small patch of an image; docs/decisions/032-anchornet-votes-in-the-class.md),
its distribution, which the pipeline has computed anyway, can vote too:

    scores = sum_i softmax(patch_i) + w * probs[decided branch]

w = 0 is the paper's rule and every bundle's default. w is a property of the
two trained networks together, so it is chosen on labelled images neither
of them trained on (`choose_anchor_vote`, from the candidates
`VOTE_WEIGHTS`) and stored in the bundle (`decision.anchor_vote`).
"""

from __future__ import annotations

import math

import numpy as np

from anchor_edge.errors import InputError

#: The weights a training run tries, smallest first: 0 (the paper's rule) up to where AnchorNet decides nearly alone
#: (its distribution then outweighs most patch sums).
VOTE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Below this many labelled images the choice is noise (one image moves it), so the paper's rule is kept.
MIN_TUNING_IMAGES = 100


def check_anchor_vote(weight: object) -> float:
    """The weight as a float, or an InputError: a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
        raise InputError(f"anchor_vote must be a number >= 0, got {weight!r}")
    if not 0 <= weight < math.inf:
        raise InputError(f"anchor_vote must be a finite number >= 0, got {weight!r}")
    return float(weight)


def choose_anchor_vote(
    patch_sums: np.ndarray, anchor_probs: np.ndarray, labels: np.ndarray, weights: tuple[float, ...] = VOTE_WEIGHTS
) -> tuple[float, dict[float, float]]:
    """The weight of `weights` with the best top-1 on these labelled images, and every weight's top-1.

    Ties go to the smallest weight, so the paper's rule is kept unless a vote
    does better; with fewer than MIN_TUNING_IMAGES images it is kept anyway.

    Args:
        patch_sums: (N, C) each image's summed patch softmax.
        anchor_probs: (N, C) each image's decided-branch class probabilities.
        labels: (N,) true class ids.

    Example:
        >>> sums = np.tile([[0.6, 0.4]], (100, 1)); anchor = np.tile([[0.1, 0.9]], (100, 1))
        >>> choose_anchor_vote(sums, anchor, np.ones(100, int), (0.0, 1.0))
        (1.0, {0.0: 0.0, 1.0: 1.0})
    """
    if not len(labels):
        return 0.0, {}
    top1 = {float(w): float(np.mean((patch_sums + w * anchor_probs).argmax(axis=1) == labels)) for w in weights}
    if len(labels) < MIN_TUNING_IMAGES:
        return 0.0, top1
    best = max(top1.values())
    return min(w for w, accuracy in top1.items() if accuracy == best), top1
