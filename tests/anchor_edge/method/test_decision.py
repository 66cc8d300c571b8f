"""Branch and class decision (docs/method.md §3) against hand-worked cases and a plain re-reading of the rule."""

import numpy as np
import pytest

from anchor_edge.errors import InputError
from anchor_edge.method.decision import decide

# Rows B63, B95, B111. Y = (0, 1, 0), P = (0.5, 0.9, 0.6): B63 and B111 agree on
# class 0, B95 is the most confident branch but predicts class 1.
MAJORITY_VS_CONFIDENT = np.array(
    [
        [0.5, 0.3, 0.2],
        [0.1, 0.9, 0.0],
        [0.6, 0.2, 0.2],
    ]
)


def test_majority_wins_over_the_most_confident_branch():
    # Class 0 has two votes >= 2. Agreeing branches B63 (0.5) and B111 (0.6): B111.
    assert decide(MAJORITY_VS_CONFIDENT, vote_min=2) == (0, 2)


def test_the_widest_rule_takes_b111_and_leaves_the_class_to_the_vote():
    # Class 0 by two votes, as above; the widest rule then takes B111 whatever the confidences: here B111 is also
    # the confident choice, so the next case makes B63 the most confident agreeing branch.
    assert decide(MAJORITY_VS_CONFIDENT, branch_rule="widest") == (0, 2)
    small_is_surest = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2]])
    assert decide(small_is_surest) == (0, 0)
    assert decide(small_is_surest, branch_rule="widest") == (0, 2)
    # No majority: the class is the most confident branch's (B95's class 1), the branch still B111.
    split = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    assert decide(split, branch_rule="widest") == (1, 2)


def test_an_unknown_branch_rule_is_an_input_error():
    with pytest.raises(InputError, match="branch_rule must be one of confident, widest, got 'largest'"):
        decide(MAJORITY_VS_CONFIDENT, branch_rule="largest")


def test_chosen_class_need_not_be_the_most_confident_branchs_top_class():
    class_id, _ = decide(MAJORITY_VS_CONFIDENT)
    most_confident_branch = 1  # P = 0.9
    assert class_id != int(MAJORITY_VS_CONFIDENT[most_confident_branch].argmax())


def test_vote_min_3_is_the_literal_formula_most_confident_branch():
    # No class has 3 votes, so the most confident branch B95 (0.9) decides: class 1,
    # and B95 is the only branch whose top probability is class 1's.
    assert decide(MAJORITY_VS_CONFIDENT, vote_min=3) == (1, 1)


def test_vote_min_1_reads_like_2():
    assert decide(MAJORITY_VS_CONFIDENT, vote_min=1) == (0, 2)
    all_disagree = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])
    assert decide(all_disagree, vote_min=1) == (0, 0)


def test_unanimous_vote_takes_the_most_confident_branch():
    probs = np.array([[0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])
    for vote_min in (1, 2, 3):
        assert decide(probs, vote_min=vote_min) == (0, 1)


def test_all_branches_disagree_falls_back_to_the_most_confident():
    # Y = (0, 1, 2), P = (0.7, 0.5, 0.6): B63 is the most confident.
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])
    assert decide(probs) == (0, 0)
    # Make B111 the most confident instead: its class 2 wins.
    probs[2] = [0.0, 0.2, 0.8]
    assert decide(probs) == (2, 2)


def test_equal_confidence_between_branches_takes_the_lowest_branch():
    # All disagree and P = 0.6 everywhere: the lowest branch B63 decides.
    probs = np.array([[0.6, 0.4, 0.0], [0.0, 0.6, 0.4], [0.4, 0.0, 0.6]])
    assert decide(probs) == (0, 0)
    # B63 and B95 agree on class 1 with the same P = 0.7: branch B63.
    probs = np.array([[0.3, 0.7], [0.3, 0.7], [0.9, 0.1]])
    assert decide(probs) == (1, 0)


def test_ties_inside_a_branch_take_the_lowest_class():
    # Y: B63 [0.4, 0.4, 0.2] -> 0, B95 -> 1, B111 [0.45, 0.1, 0.45] -> 0.
    # Class 0 has two votes; agreeing B63 (0.4) and B111 (0.45): B111.
    probs = np.array([[0.4, 0.4, 0.2], [0.1, 0.5, 0.4], [0.45, 0.1, 0.45]])
    assert decide(probs) == (0, 2)


def test_branch_rule_counts_a_tied_top_probability_for_the_class():
    # Y: B63 [0.45, 0.45, 0.1] -> 0 (tie), B95 [0.2, 0.4, 0.4] -> 1, B111 [0.3, 0.35, 0.35] -> 1.
    # Class 1 has two votes. [P_j == prob_j(1)]: B63 0.45 == 0.45 yes, B95 yes, B111 yes;
    # the largest P_j among them is B63's 0.45, although B63 voted for class 0.
    probs = np.array([[0.45, 0.45, 0.1], [0.2, 0.4, 0.4], [0.3, 0.35, 0.35]])
    assert decide(probs) == (1, 0)


def test_returns_python_ints():
    class_id, branch_index = decide(MAJORITY_VS_CONFIDENT)
    assert type(class_id) is int and type(branch_index) is int


def _decide_by_the_letter(probs, vote_min):
    """docs/method.md §3 read literally, one loop at a time."""
    tops = []
    for row in probs.tolist():
        best = max(row)
        tops.append((row.index(best), best))  # list.index finds the lowest class
    votes = {}
    for y, _ in tops:
        votes[y] = votes.get(y, 0) + 1
    winners = [y for y, count in votes.items() if count >= vote_min and count == max(votes.values())]
    if len(winners) == 1:
        class_id = winners[0]
    else:
        most_confident = max(range(3), key=lambda j: (tops[j][1], -j))
        class_id = tops[most_confident][0]
    scores = [tops[j][1] if tops[j][1] == probs[j][class_id] else -1.0 for j in range(3)]
    return class_id, max(range(3), key=lambda j: (scores[j], -j))


@pytest.mark.parametrize("vote_min", [1, 2, 3])
def test_matches_a_plain_reading_on_random_tied_inputs(vote_min):
    rng = np.random.default_rng(vote_min)
    for _ in range(300):
        probs = rng.integers(0, 4, size=(3, 4)) / 4.0  # coarse values: many ties
        assert decide(probs, vote_min=vote_min) == _decide_by_the_letter(probs, vote_min)


@pytest.mark.parametrize("shape", [(2, 5), (4, 5), (3,), (3, 0), (1, 3, 3), ()])
def test_wrong_shape_is_an_input_error(shape):
    with pytest.raises(InputError, match="shape"):
        decide(np.zeros(shape))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_an_input_error(bad_value):
    probs = MAJORITY_VS_CONFIDENT.copy()
    probs[1, 2] = bad_value
    with pytest.raises(InputError, match="NaN or infinity"):
        decide(probs)


def test_non_numeric_values_are_an_input_error():
    with pytest.raises(InputError, match="real numbers"):
        decide(np.array([["a", "b"]] * 3))


@pytest.mark.parametrize("vote_min", [0, 4, -1, 2.0, True, "2"])
def test_bad_vote_min_is_an_input_error(vote_min):
    with pytest.raises(InputError, match="vote_min"):
        decide(MAJORITY_VS_CONFIDENT, vote_min=vote_min)
