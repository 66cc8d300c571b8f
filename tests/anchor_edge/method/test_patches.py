"""Which map LSP reads (anchor_edge.method.patches): the decided class's F, or its maximum over classes.

Hand-made outputs for one image, 2 classes, the three branches at 224: every
map is zero but for one hot cell per class. On every branch F[class 0] is 5
at (row 0, col 0) and F[class 1] is 7 at (row 3, col 5), so the maximum over
classes is hottest at (3, 5). Every branch votes class 0. The mapping rule
puts the box of location (r, c) of a stride-8 branch at
[8c, 8r, 8c + k, 8r + k) (docs/method.md §2): B111's boxes are
[0, 0, 111, 111) and [40, 24, 151, 135).
"""

import numpy as np
import pytest

from anchor_edge.bundle.schema import branch_layout
from anchor_edge.errors import InputError
from anchor_edge.method.lsp import LSPParams
from anchor_edge.method.patches import branch_heatmap, check_heatmap, locate, select_boxes

BRANCHES = branch_layout((63, 95, 111), 8, 224, attention=False)
ONE_PATCH = {k: LSPParams(max_patches=1, iou_threshold=0.5, coverage=0.1) for k in (63, 95, 111)}


def _outputs():
    outputs = {"probs": np.array([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]], np.float32)}
    for branch in BRANCHES:
        n = branch.map_size
        outputs[branch.map_output] = np.zeros((1, 2, n, n), np.float32)
        outputs[branch.map_output][0, 0, 0, 0] = 5.0
        outputs[branch.map_output][0, 1, 3, 5] = 7.0
    return outputs


def test_the_class_heatmap_is_f_of_the_class_and_the_max_heatmap_the_hottest_class_per_cell():
    outputs = _outputs()
    expected = np.zeros((15, 15), np.float32)
    expected[0, 0], expected[3, 5] = 5.0, 7.0
    np.testing.assert_array_equal(branch_heatmap(outputs, 0, 0, BRANCHES[2], "max"), expected)
    np.testing.assert_array_equal(branch_heatmap(outputs, 0, 0, BRANCHES[2]), outputs["map_111"][0, 0])


def test_the_class_heatmap_puts_the_patch_where_f_of_the_class_is_hot():
    assert select_boxes(_outputs(), 0, 0, BRANCHES[2], ONE_PATCH).tolist() == [[0, 0, 111, 111]]


def test_the_max_heatmap_puts_the_patch_on_the_hottest_class_whatever_was_decided():
    for class_id in (0, 1):
        boxes = select_boxes(_outputs(), 0, class_id, BRANCHES[2], ONE_PATCH, "max")
        assert boxes.tolist() == [[40, 24, 151, 135]]


def test_locate_reads_the_chosen_heatmap_on_the_chosen_branch():
    (paper,) = locate(_outputs(), BRANCHES, ONE_PATCH, 2, branch_rule="widest")
    (hottest,) = locate(_outputs(), BRANCHES, ONE_PATCH, 2, branch_rule="widest", heatmap="max")
    assert (paper.class_id, paper.branch, paper.boxes.tolist()) == (0, 2, [[0, 0, 111, 111]])
    assert (hottest.class_id, hottest.branch, hottest.boxes.tolist()) == (0, 2, [[40, 24, 151, 135]])


def test_an_unknown_heatmap_is_an_input_error():
    assert check_heatmap("class") == "class" and check_heatmap("max") == "max"
    with pytest.raises(InputError, match="heatmap must be one of class, max, got 'attention'"):
        check_heatmap("attention")
    with pytest.raises(InputError, match=r"got \['class'\]"):  # an unhashable value is an InputError too
        check_heatmap(["class"])
