"""Mapping rule and LSP (docs/method.md §2 and §4) against hand-worked boxes and a plain loop of Algorithm 1.

IoU of two 63 px boxes whose corners differ by (dx, dy) map steps of 8 px:
overlap (63 - 8dx)(63 - 8dy), union 2 * 63 * 63 - overlap.
    (1, 0): 55*63 = 3465 / (7938 - 3465 = 4473) = 0.775
    (1, 1): 55*55 = 3025 / (7938 - 3025 = 4913) = 0.616
    (2, 0): 47*63 = 2961 / (7938 - 2961 = 4977) = 0.595
    (2, 1): 47*55 = 2585 / (7938 - 2585 = 5353) = 0.483
    (2, 2): 47*47 = 2209 / (7938 - 2209 = 5729) = 0.386
    (3, 0): 39*63 = 2457 / (7938 - 2457 = 5481) = 0.448
"""

import math

import numpy as np
import pytest

from anchor_edge.errors import InputError
from anchor_edge.method.lsp import PRESETS, LSPParams, location_box, preset_params, select_patches

# Row-major values; descending order of locations (row, col):
# 9 (0,0), 8 (2,2), 7 (2,1), 6 (2,0), 5 (0,2), 4 (1,2), 3 (1,1), 2 (1,0), 1 (0,1).
HEAT_3X3 = np.array(
    [
        [9.0, 1.0, 5.0],
        [2.0, 3.0, 4.0],
        [6.0, 7.0, 8.0],
    ]
)
BOX = {  # (row, col) -> [8c, 8r, 8c + 63, 8r + 63)
    (0, 0): [0, 0, 63, 63],
    (2, 2): [16, 16, 79, 79],
    (2, 0): [0, 16, 63, 79],
    (0, 2): [16, 0, 79, 63],
}


def _select(heat, patch_size=63, stride=8, *, k=9, t=0.5, p=1.0):
    return select_patches(heat, patch_size, stride, max_patches=k, iou_threshold=t, coverage=p).tolist()


def test_threshold_half_keeps_only_the_opposite_corner():
    # (0,0) taken; (2,2): 0.386 < 0.5 taken; (2,1): 0.775 with (2,2); (2,0), (0,2): 0.595
    # with (0,0); (1,2): 0.775 with (2,2); (1,1), (1,0), (0,1): >= 0.616 with (0,0).
    assert _select(HEAT_3X3, t=0.5) == [BOX[0, 0], BOX[2, 2]]


def test_threshold_0_6_keeps_the_four_corners_in_heat_order():
    # (2,1): 0.775 with (2,2). (2,0): 0.595 with (0,0) and with (2,2) -> taken.
    # (0,2): 0.595, 0.595, and 0.386 with (2,0) -> taken. The rest are >= 0.616 with a corner.
    assert _select(HEAT_3X3, t=0.6) == [BOX[0, 0], BOX[2, 2], BOX[2, 0], BOX[0, 2]]


def test_max_patches_stops_early():
    assert _select(HEAT_3X3, t=0.6, k=3) == [BOX[0, 0], BOX[2, 2], BOX[2, 0]]
    assert _select(HEAT_3X3, t=0.6, k=1) == [BOX[0, 0]]


def test_coverage_cuts_candidates_before_max_patches():
    # floor(9 * 0.45) = 4 candidates: (0,0), (2,2), (2,1), (2,0). (0,2) is the 5th and
    # would be taken at T = 0.6 (test above), but lies beyond the cut.
    assert _select(HEAT_3X3, t=0.6, p=0.45) == [BOX[0, 0], BOX[2, 2], BOX[2, 0]]
    # floor(9 * 0.5) = 4 as well; floor(9 * 0.56) = 5 reaches (0,2).
    assert _select(HEAT_3X3, t=0.6, p=0.5) == [BOX[0, 0], BOX[2, 2], BOX[2, 0]]
    assert _select(HEAT_3X3, t=0.6, p=0.56) == [BOX[0, 0], BOX[2, 2], BOX[2, 0], BOX[0, 2]]


def test_coverage_below_one_location_still_takes_the_first_box():
    # floor(9 * 0.1) = 0 -> max(1, 0) = 1 candidate: only the hottest.
    assert _select(HEAT_3X3, t=1.0, p=0.1) == [BOX[0, 0]]


def test_ties_keep_row_major_order():
    # Order by heat with row-major ties: (0,1), (0,2), (0,0), (0,3). At T = 0.6:
    # (0,2) and (0,0) are 0.775 from (0,1); (0,3) is 0.595 from (0,1) -> taken.
    # (Starting from (0,2) instead would take (0,2) and (0,0).)
    assert _select(np.array([[1.0, 2.0, 2.0, 1.0]]), t=0.6) == [[8, 0, 71, 63], [24, 0, 87, 63]]
    # A flat 1x3 map at T = 0.7: (0,0), then (0,1) is 0.775 away, (0,2) is 0.595 away.
    assert _select(np.zeros((1, 3)), t=0.7) == [[0, 0, 63, 63], [16, 0, 79, 63]]


def test_iou_equal_to_threshold_is_rejected():
    # Patch 3, stride 1: neighbours overlap 2*3 = 6 of union 9 + 9 - 6 = 12, IoU exactly 0.5.
    heat = np.array([[2.0, 1.0]])
    assert _select(heat, patch_size=3, stride=1, t=0.5) == [[0, 0, 3, 3]]
    assert _select(heat, patch_size=3, stride=1, t=0.5 + 1e-9) == [[0, 0, 3, 3], [1, 0, 4, 3]]


def test_one_location_gives_the_whole_patch():
    for k in (63, 95, 111):
        boxes = select_patches(np.array([[-3.5]]), k, max_patches=5, iou_threshold=0.3, coverage=0.05)
        assert boxes.tolist() == [[0, 0, k, k]]


def test_output_is_int64_n_by_4():
    boxes = select_patches(HEAT_3X3, 63, max_patches=9, iou_threshold=0.6, coverage=1.0)
    assert boxes.dtype == np.int64 and boxes.shape == (4, 4)


@pytest.mark.parametrize(
    ("side", "coverage", "expected"),
    [
        (21, 0.05, 22),  # 441 * 0.05 = 22.05
        (17, 0.04, 11),  # 289 * 0.04 = 11.56
        (15, 0.03, 6),  # 225 * 0.03 = 6.75
        (21, 0.3, 132),  # 441 * 0.3 = 132.3
        (10, 0.29, 29),  # 100 * 0.29 = 29 exactly (0.29 in binary is just below)
        (10, 0.07, 7),  # 100 * 0.07 = 7 exactly (binary just above)
    ],
)
def test_candidate_count_is_floor_of_locations_times_coverage(side, coverage, expected):
    # Patch 1 with stride 8: no two boxes overlap, so every candidate is taken.
    heat = -np.arange(side * side, dtype=float).reshape(side, side)
    boxes = select_patches(heat, 1, 8, max_patches=side * side, iou_threshold=0.3, coverage=coverage)
    assert len(boxes) == expected


@pytest.mark.parametrize(("k", "side"), [(63, 21), (95, 17), (111, 15)])
def test_location_boxes_cover_the_224_input(k, side):
    assert side == (224 - k) // 8 + 1
    assert location_box(0, 0, k) == (0, 0, k, k)
    last = 8 * (side - 1)
    assert location_box(side - 1, side - 1, k) == (last, last, last + k, last + k)
    assert last + k <= 224 < last + 8 + k  # the last box ends inside 224; one more would not


def test_boxes_follow_the_mapping_rule_in_row_major_order():
    # Equal heat everywhere: the stable order is row-major; patch 5, stride 4 on a 2 x 3 map never
    # overlaps by IoU 0.9, so every location is taken, in row-major order.
    boxes = select_patches(np.zeros((2, 3)), 5, 4, max_patches=6, iou_threshold=0.9, coverage=1.0)
    assert boxes.tolist() == [
        [0, 0, 5, 5],
        [4, 0, 9, 5],
        [8, 0, 13, 5],
        [0, 4, 5, 9],
        [4, 4, 9, 9],
        [8, 4, 13, 9],
    ]


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        ({63: (5, 0.3)}, r"for patch size 63 must be \(max_patches, iou_threshold, coverage\), got \(5, 0.3\)"),
        ({63: 5}, "for patch size 63 must be"),
        ({"big": (5, 0.3, 0.05)}, "patch size must be an integer >= 1, got 'big'"),
        ({63: (5, 0.3, 0.0)}, r"coverage must be a number in \(0, 1\], got 0.0"),
        ([(63, (5, 0.3, 0.05))], "preset must be a preset's name or"),
    ],
)
def test_a_preset_given_as_a_mapping_is_checked_when_given(preset, message):
    with pytest.raises(InputError, match=message):
        preset_params(preset)
    assert preset_params({63: [5, 0.3, 0.05]}) == {63: LSPParams(5, 0.3, 0.05)}


def test_presets_match_the_spec_table():
    assert PRESETS == {
        "fast": {63: (1, 0.3, 0.05), 95: (1, 0.3, 0.04), 111: (1, 0.3, 0.03)},
        "visual": {63: (5, 0.3, 0.05), 95: (3, 0.3, 0.04), 111: (2, 0.3, 0.03)},
        "accurate": {63: (24, 0.8, 0.3), 95: (10, 0.8, 0.3), 111: (8, 0.8, 0.3)},
    }
    params = PRESETS["visual"][63]
    assert isinstance(params, LSPParams)
    assert (params.max_patches, params.iou_threshold, params.coverage) == (5, 0.3, 0.05)


def test_fast_takes_the_hottest_location_alone():
    # HEAT_3X3's hottest location is (0, 0), 9; the next, (2, 2), would pass any of the presets' T.
    for k, params in PRESETS["fast"].items():
        got = select_patches(
            HEAT_3X3, k, max_patches=params.max_patches, iou_threshold=params.iou_threshold, coverage=params.coverage
        )
        assert got.tolist() == [[0, 0, k, k]]


def _lsp_by_the_letter(heat, k, stride, max_patches, threshold, coverage):
    """Algorithm 1 as a plain loop over (value, row, col) triples."""
    height, width = heat.shape
    locations = sorted(((-heat[r, c], r, c) for r in range(height) for c in range(width)))
    candidates = locations[: max(1, math.floor(height * width * coverage + 1e-9))]
    boxes = [(stride * c, stride * r, stride * c + k, stride * r + k) for _, r, c in candidates]

    def iou(a, b):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        return inter / (2 * k * k - inter)

    taken = [boxes[0]]
    for box in boxes[1:]:
        if len(taken) == max_patches:
            break
        if all(iou(box, other) < threshold for other in taken):
            taken.append(box)
    return [list(box) for box in taken]


@pytest.mark.parametrize("preset", ["fast", "visual", "accurate"])
@pytest.mark.parametrize(("k", "side"), [(63, 21), (95, 17), (111, 15)])
def test_matches_a_plain_loop_on_random_heatmaps(preset, k, side):
    rng = np.random.default_rng(k + len(preset))
    params = PRESETS[preset][k]
    for trial in range(20):
        if trial % 2:  # six heat levels: most locations tie with others
            heat = rng.integers(0, 6, size=(side, side)).astype(float)
        else:
            heat = rng.normal(size=(side, side))
        got = select_patches(
            heat, k, max_patches=params.max_patches, iou_threshold=params.iou_threshold, coverage=params.coverage
        )
        assert got.tolist() == _lsp_by_the_letter(heat, k, 8, *params)


@pytest.mark.parametrize(
    "heat",
    [
        np.zeros(4),
        np.zeros((2, 2, 2)),
        np.zeros((0, 3)),
        np.array([[1.0, np.nan]]),
        np.array([[np.inf]]),
        np.array([[True]]),
    ],
)
def test_bad_heatmap_is_an_input_error(heat):
    with pytest.raises(InputError, match="heatmap"):
        select_patches(heat, 63, max_patches=1, iou_threshold=0.5, coverage=0.5)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("patch_size", 0),
        ("patch_size", 63.0),
        ("stride", 0),
        ("max_patches", 0),
        ("max_patches", True),
        ("iou_threshold", 0.0),
        ("iou_threshold", 1.5),
        ("iou_threshold", float("nan")),
        ("coverage", 0.0),
        ("coverage", 1.01),
        ("coverage", "0.3"),
    ],
)
def test_bad_parameters_are_an_input_error(argument, value):
    arguments = {"patch_size": 63, "stride": 8, "max_patches": 2, "iou_threshold": 0.5, "coverage": 0.5}
    arguments[argument] = value
    with pytest.raises(InputError, match=argument):
        select_patches(HEAT_3X3, **arguments)
