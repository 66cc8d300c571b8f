"""AnchorNet's vote: its decided branch's class distribution, weighted, added to the patches' softmax.

The paper's image class is the argmax of the sum of the patches' softmax
(docs/method.md §5); AnchorNet's own class only chooses the heatmap. Where
AnchorNet classifies better than the patches do (a downstream that sees one
small patch of an image; docs/decisions/032-anchornet-votes-in-the-class.md),
its distribution, which the pipeline has computed anyway, can vote too:

    scores = mean_i softmax(patch_i) + w * probs[decided branch]

The mean, not the sum, so that w weighs the same against one patch or ten
(another preset, a budget, early exit); with w = 0 the argmax is the
paper's, the rule of every bundle by default. The decided branch is the one
whose heatmap LSP read: B111 under the "widest" branch rule of a folder
bundle, whose top class may differ from the class the branches decided.
w is a property of the two trained networks together, so it is chosen on
labelled images neither of them trained on (`choose_anchor_vote`, from the
candidates `VOTE_WEIGHTS`) and stored in the bundle (`decision.anchor_vote`).
"""

from __future__ import annotations

import math

import numpy as np

from anchor_edge.errors import InputError

#: The weights a training run tries, smallest first: 0 (the paper's rule) up to where AnchorNet decides nearly alone
#: (at 8 its distribution outweighs any patch mean but where its top two classes nearly tie).
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


def class_scores(patch_probs: np.ndarray, anchor_scores: np.ndarray | None) -> np.ndarray:
    """The scores whose argmax is an image's class: its (n, C) patch softmaxes summed (the paper's rule), or with
    AnchorNet's vote (w times its decided branch's probabilities, (C,)) their mean plus the vote.

    Example:
        >>> class_scores(np.array([[0.6, 0.4], [0.8, 0.2]]), None)
        array([1.4, 0.6])
        >>> class_scores(np.array([[0.6, 0.4], [0.8, 0.2]]), 2 * np.array([0.1, 0.9]))
        array([0.9, 2.1])
    """
    if anchor_scores is None:
        return patch_probs.sum(axis=0)
    return patch_probs.mean(axis=0, dtype=np.float64) + anchor_scores


def choose_anchor_vote(
    patch_means: np.ndarray, anchor_probs: np.ndarray, labels: np.ndarray, weights: tuple[float, ...] = VOTE_WEIGHTS
) -> tuple[float, dict[float, float]]:
    """The weight of `weights` with the best top-1 on these labelled images, and every weight's top-1.

    Ties go to the smallest weight, so the paper's rule is kept unless a vote
    does better; with fewer than MIN_TUNING_IMAGES images it is kept anyway.

    Args:
        patch_means: (N, C) each image's mean patch softmax.
        anchor_probs: (N, C) each image's decided-branch class probabilities.
        labels: (N,) true class ids.

    Example:
        >>> means = np.tile([[0.6, 0.4]], (100, 1)); anchor = np.tile([[0.1, 0.9]], (100, 1))
        >>> choose_anchor_vote(means, anchor, np.ones(100, int), (0.0, 1.0))
        (1.0, {0.0: 0.0, 1.0: 1.0})
    """
    if not len(labels):
        return 0.0, {}
    top1 = {float(w): float(np.mean((patch_means + w * anchor_probs).argmax(axis=1) == labels)) for w in weights}
    if len(labels) < MIN_TUNING_IMAGES:
        return 0.0, top1
    best = max(top1.values())
    return min(w for w, accuracy in top1.items() if accuracy == best), top1
