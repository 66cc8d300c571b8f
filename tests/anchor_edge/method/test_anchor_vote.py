"""Choosing AnchorNet's vote: a hand-worked set of images where the patches and AnchorNet each are right on some."""

import numpy as np
import pytest

from anchor_edge.errors import InputError
from anchor_edge.method.anchor_vote import (
    MIN_TUNING_IMAGES,
    VOTE_WEIGHTS,
    check_anchor_vote,
    choose_anchor_vote,
    class_scores,
)


def _images(patches_right: int, anchornet_right: int, both_right: int):
    """Three groups of images of class 0 among classes 0, 1, 2:
    - patches right by 0.2 ([0.6, 0.4, 0]), AnchorNet sure of class 1: right while w < 0.2;
    - patches wrong by 0.4 ([0.3, 0.7, 0]), AnchorNet sure of class 0: right once w > 0.4;
    - both right: right at every w."""
    groups = [
        (patches_right, [0.6, 0.4, 0.0], [0.0, 1.0, 0.0]),
        (anchornet_right, [0.3, 0.7, 0.0], [1.0, 0.0, 0.0]),
        (both_right, [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ]
    means = np.array([row for count, row, _ in groups for _ in range(count)])
    anchor = np.array([row for count, _, row in groups for _ in range(count)])
    return means, anchor, np.zeros(len(means), int)


def test_the_smallest_weight_of_the_best_top1_wins():
    weight, top1 = choose_anchor_vote(*_images(30, 50, 20))
    # w = 0: 30 + 20 right; w = 0.25: neither flips the way it should (0.6 < 0.65, 0.55 < 0.7): 20; w >= 0.5: 50 + 20.
    assert top1 == {0.0: 0.5, 0.25: 0.2, 0.5: 0.7, 1.0: 0.7, 2.0: 0.7, 4.0: 0.7, 8.0: 0.7}
    assert weight == 0.5


def test_the_papers_rule_is_kept_when_the_patches_do_better_or_the_images_are_too_few():
    assert choose_anchor_vote(*_images(50, 30, 20))[0] == 0.0  # w = 0: 70 right, any vote 50 or fewer
    means, anchor, labels = _images(30, 50, MIN_TUNING_IMAGES - 81)
    weight, top1 = choose_anchor_vote(means, anchor, labels)
    assert len(labels) == MIN_TUNING_IMAGES - 1 and top1[0.5] > top1[0.0] and weight == 0.0
    assert choose_anchor_vote(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, int)) == (0.0, {})
    assert VOTE_WEIGHTS[0] == 0.0, "the paper's rule is a candidate, so a vote must beat it"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "2", True, None])
def test_a_weight_must_be_a_finite_number_at_least_zero(bad):
    with pytest.raises(InputError, match="anchor_vote must be"):
        check_anchor_vote(bad)
    assert check_anchor_vote(2) == 2.0 and isinstance(check_anchor_vote(np.float32(0.5)), float)


def test_with_a_vote_the_patches_count_by_their_mean_so_a_weight_means_the_same_for_one_patch_or_three():
    one, three = np.array([[0.3, 0.7]]), np.array([[0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    vote = 1.0 * np.array([0.9, 0.1])
    assert np.allclose(class_scores(three, None), [0.9, 2.1]), "no vote: the paper's sum"
    assert np.allclose(class_scores(one, vote), [1.2, 0.8]) and np.allclose(class_scores(three, vote), [1.2, 0.8])
