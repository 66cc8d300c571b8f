"""Which map LSP reads (anchor_edge.method.patches): the decided class's F, or the branch's attention map S.

Hand-made outputs for one image, 2 classes, the three branches at 224: every
map is zero but for one hot cell. F[class 0] of B111 is hottest at (row 0,
col 0), its S at (row 3, col 5); the mapping rule puts the box of location
(r, c) of a stride-8 branch at [8c, 8r, 8c + k, 8r + k) (docs/method.md §2),
so B111's boxes are [0, 0, 111, 111) and [40, 24, 151, 135).
"""

import numpy as np
import pytest

from anchor_edge.bundle.schema import branch_layout
from anchor_edge.errors import InputError
from anchor_edge.method.lsp import LSPParams
from anchor_edge.method.patches import check_heatmap, locate, select_boxes

WITH_S = branch_layout((63, 95, 111), 8, 224, attention=True)
WITHOUT_S = branch_layout((63, 95, 111), 8, 224, attention=False)
ONE_PATCH = {k: LSPParams(max_patches=1, iou_threshold=0.5, coverage=0.1) for k in (63, 95, 111)}


def _outputs():
    outputs = {"probs": np.array([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]], np.float32)}  # every branch votes class 0
    for branch in WITH_S:
        n = branch.map_size
        outputs[branch.map_output] = np.zeros((1, 2, n, n), np.float32)
        outputs[branch.map_output][0, 0, 0, 0] = 5.0
        outputs[branch.attention_output] = np.full((1, 1, n, n), 0.5 / (n * n - 1), np.float32)
        outputs[branch.attention_output][0, 0, 3, 5] = 0.5
    return outputs


def test_the_class_heatmap_puts_the_patch_where_f_of_the_class_is_hot():
    boxes = select_boxes(_outputs(), 0, 0, WITH_S[2], ONE_PATCH)
    assert boxes.tolist() == [[0, 0, 111, 111]]


def test_the_attention_heatmap_puts_the_patch_where_s_is_hot_whatever_the_class():
    for class_id in (0, 1):
        boxes = select_boxes(_outputs(), 0, class_id, WITH_S[2], ONE_PATCH, "attention")
        assert boxes.tolist() == [[40, 24, 151, 135]]


def test_locate_reads_the_chosen_heatmap_on_the_chosen_branch():
    (paper,) = locate(_outputs(), WITH_S, ONE_PATCH, 2, branch_rule="widest")
    (attention,) = locate(_outputs(), WITH_S, ONE_PATCH, 2, branch_rule="widest", heatmap="attention")
    assert (paper.class_id, paper.branch, paper.boxes.tolist()) == (0, 2, [[0, 0, 111, 111]])
    assert (attention.class_id, attention.branch, attention.boxes.tolist()) == (0, 2, [[40, 24, 151, 135]])


def test_an_unknown_heatmap_or_attention_without_s_is_an_input_error():
    assert check_heatmap("attention", WITH_S) == "attention" and check_heatmap("class", WITHOUT_S) == "class"
    with pytest.raises(InputError, match="heatmap must be one of class, attention, got 'logits'"):
        check_heatmap("logits", WITH_S)
    with pytest.raises(InputError, match="exports none .* --pooling attention"):
        check_heatmap("attention", WITHOUT_S)
