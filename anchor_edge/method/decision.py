"""Which class an image is, and which branch localizes it (docs/method.md §3, paper eqs. 6-8).

AnchorNet's three branches (B63, B95, B111, in that order) each give a class
distribution. Each branch votes for its top class; the image's class is the
one the branches agree on, and the branch that localizes it is the most
confident branch among those whose top probability belongs to that class.
Its heatmap F[class] then drives LSP (`anchor_edge.method.lsp`).

The rule runs on every image right after AnchorNet, when the model run has
left the CPU caches cold; there a numpy call costs several times what it
costs warm, so the rule works on plain Python lists (one `tolist`): about
half the time of the numpy version there (docs/performance.md).
"""

import math

import numpy as np

from anchor_edge.bundle.choices import BranchRule
from anchor_edge.errors import InputError

NUM_BRANCHES = 3
_RULES = tuple(rule.value for rule in BranchRule)


def decide(branch_probs: np.ndarray, vote_min: int = 2, branch_rule: str = BranchRule.CONFIDENT) -> tuple[int, int]:
    """Pick the image's class and the branch whose heatmap localizes it.

    With Y_j = argmax of branch j's probabilities (ties: lowest class index)
    and P_j its maximum:

    * Class: a class predicted (as Y_j) by at least `vote_min` branches;
      otherwise Y of the most confident branch (largest P_j, ties: lowest
      branch index).
    * Branch: argmax over j of [P_j == prob_j(class)] * P_j (ties: lowest
      branch index): the most confident branch among those whose top
      probability is the class's probability. The argmax runs over those
      branches only, so the rule holds even if the scores are not positive.
      With `branch_rule` "widest": B111, the widest branch, whatever the
      confidences (`anchor_edge.bundle.choices.BranchRule` says when).

    Reading of `vote_min` (docs/method.md §3): the paper writes "> 2" votes,
    which with three branches means all three agree; then the most
    confident branch predicts that class anyway, so the literal rule never
    differs from "take the most confident branch". The default 2 reads it as
    a majority vote; `vote_min=3` reproduces the literal formula. With
    `vote_min=1` several classes can qualify; the class with the most votes
    wins and a three-way split falls back to the most confident branch, so
    1 behaves exactly like 2.

    Args:
        branch_probs: (3, C) array, rows B63, B95, B111, each a branch's
            class probabilities (as the graph outputs them).
        vote_min: votes a class needs to win outright, 1 to 3.
        branch_rule: "confident" (the branch rule above, eq. 8) or "widest".

    Returns:
        (class_id, branch_index) as Python ints; branch_index 0, 1, 2 is
        B63, B95, B111.

    Raises:
        InputError: wrong shape, non-finite values, vote_min outside 1..3, or another branch rule.

    Example:
        >>> decide(np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]]))
        (0, 0)
        >>> decide(np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]]), branch_rule="widest")
        (0, 2)
    """
    rows = _checked_rows(branch_probs)
    is_int = isinstance(vote_min, (int, np.integer)) and not isinstance(vote_min, bool)
    if not is_int or not 1 <= vote_min <= NUM_BRANCHES:
        raise InputError(f"vote_min must be an integer from 1 to {NUM_BRANCHES}, got {vote_min!r}")
    if branch_rule not in _RULES:
        check_branch_rule(branch_rule)

    # Plain Python on three short rows: right after a model run the caches are cold, and each
    # numpy call then costs tens of microseconds (module docstring).
    top_prob = [max(row) for row in rows]
    top_class = [row.index(p) for row, p in zip(rows, top_prob)]  # the first maximum: lowest class on ties
    most_confident = top_prob.index(max(top_prob))  # lowest branch on ties

    votes = {c: top_class.count(c) for c in top_class}
    most = max(votes.values())
    leaders = [c for c, n in votes.items() if n == most]
    class_id = leaders[0] if most >= vote_min and len(leaders) == 1 else top_class[most_confident]

    if branch_rule == BranchRule.WIDEST:
        return class_id, NUM_BRANCHES - 1  # rows are in receptive-field order: B111 is the last
    agrees = [j for j in range(NUM_BRANCHES) if top_prob[j] == rows[j][class_id]]
    branch_index = max(agrees, key=top_prob.__getitem__)  # max keeps the first of equals: lowest branch
    return class_id, branch_index


def check_branch_rule(rule: object) -> BranchRule:
    """The rule as its enum, or an InputError naming the rules there are."""
    return BranchRule.checked(rule, "branch_rule")


def _checked_rows(branch_probs: np.ndarray) -> list[list[float]]:
    """The probabilities as three Python lists, or an InputError saying what is wrong."""
    probs = np.asarray(branch_probs)
    if probs.ndim != 2 or probs.shape[0] != NUM_BRANCHES or probs.shape[1] < 1:
        raise InputError(
            f"branch_probs must have shape ({NUM_BRANCHES}, num_classes), one row per branch "
            f"B63, B95, B111; got shape {probs.shape}"
        )
    if probs.dtype.kind not in "iuf":  # not bool, complex, strings or objects
        raise InputError(f"branch_probs must hold real numbers, got dtype {probs.dtype}")
    rows = probs.tolist()
    if not all(math.isfinite(value) for row in rows for value in row):
        raise InputError("branch_probs contains NaN or infinity; check the model output")
    return rows
