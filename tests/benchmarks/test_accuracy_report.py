"""benchmarks/accuracy_report.py on hand-made records whose figures are worked out below."""

import pytest

from anchor_edge.bundle.baselines import BaselineEntry
from anchor_edge.bundle.precision_records import Verification
from anchor_edge.bundle.schema import Manifest
from benchmarks.accuracy_report import BUDGETS, summarize, table
from tests.manifests import bundle_json

MACS = {"63": 10, "95": 20, "111": 30, "224": 100}
BUNDLE_JSON = bundle_json()
BUNDLE_JSON["trained"] = True
BUNDLE_JSON["models"]["downstream"]["multiply_adds"] = MACS
BUNDLE_JSON["models"]["anchornet"].update(pooling="gap", multiply_adds=50)
BUNDLE_META = Manifest.from_json(BUNDLE_JSON)
#: Both baselines cost what the bundle's downstream does; only their multiply-adds enter the report.
BASELINE = BaselineEntry(
    file="baseline.onnx",
    name="resnet18",
    weights="random",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    multiply_adds={int(size): count for size, count in MACS.items()},
    verification=Verification(images=1, sizes=(224,), max_abs_diff={"logits": 0.0}, top1_agreement=1.0, tolerance=1e-3),
)


def _record(label, scale, branch, first_box, predicted, visual_sizes, accurate_sizes, budget_kept=None):
    budget_kept = budget_kept or {}
    row = {
        "label": label,
        "scale": scale,
        "branch": branch,
        "anchor_class": label,
        "box": [40, 40, 60, 80],
        "first_box": first_box,
        "patch_sizes_patches_fast": visual_sizes[:1],
        "patch_sizes_patches_visual": visual_sizes,
        "patch_sizes_patches_accurate": accurate_sizes,
    }
    # early exit: the first patch only at 0.5, the first two at 0.8, all at 0.95
    for threshold, used in ((0.5, 1), (0.8, 2), (0.95, len(accurate_sizes))):
        row[f"patch_sizes_early_exit_{threshold}"] = accurate_sizes[:used]
    # budgets: the accurate patches the benchmark kept (given here), and the first one only with early exit
    for budget in BUDGETS:
        kept = budget_kept.get(budget, accurate_sizes)
        row[f"patch_sizes_budget_{budget:g}"] = kept
        row[f"patch_sizes_budget_{budget:g}_early_exit_0.8"] = kept[:1]
    keys = (
        [
            "full",
            "full_bundle",
            "patches_fast",
            "patches_visual",
            "patches_accurate",
            "early_exit_0.5",
            "early_exit_0.8",
            "early_exit_0.95",
        ]
        + [f"budget_{b:g}{suffix}" for b in BUDGETS for suffix in ("", "_early_exit_0.8")]
        + [f"{kind}_{size}" for size in (63, 95, 111) for kind in ("resized", "one_patch", "one_patch_full_trained")]
        + [f"resized_{s}_full_trained" for s in (63, 95, 111)]
    )
    row.update({key: predicted.get(key, label) for key in [*keys, "anchor_class"]})
    return row


@pytest.fixture
def report():
    records = [
        # right everywhere; first 63 box [20, 30, 83, 93) holds the centre (50, 60) and the whole digit
        _record(1, 0, 0, [20, 30, 83, 93], {}, [63, 63], [63] * 4, {0.3: [63] * 3}),
        # resized to 63 wrong; first box [56, 0, 119, 63) misses the centre
        _record(2, 0, 0, [56, 0, 119, 63], {"resized_63": 7}, [63], [63, 63]),
        # full image wrong; B111 box [0, 0, 111, 111) holds everything
        _record(
            3,
            2,
            2,
            [0, 0, 111, 111],
            {"full": 5, "patches_visual": 5, "early_exit_0.5": 4, "anchor_class": 9, "budget_0.3": 4},
            [111],
            [111, 111],
            {0.3: [111], 0.4: [111], 0.55: [111]},
        ),
    ]
    return summarize(records, BUNDLE_META, BASELINE, BASELINE)


def test_top1_and_multiply_adds_per_method(report):
    methods = {m["key"]: m for m in report["methods"]}
    assert methods["full"]["top1"] == pytest.approx(200 / 3, abs=0.01)
    assert methods["patches_visual"]["top1"] == pytest.approx(200 / 3, abs=0.01)
    # visual: (2*10 + 10 + 30) / 3 = 20 MACs; accurate: (40 + 20 + 60) / 3 = 40
    assert (
        methods["patches_visual"]["multiply_adds"] == pytest.approx(20)
        and methods["patches_visual"]["over_full"] == 0.2
    )
    assert methods["patches_accurate"]["multiply_adds"] == pytest.approx(40)
    # fast: the first patch, (10 + 10 + 30) / 3 MACs, right everywhere
    assert (
        methods["patches_fast"]["multiply_adds"] == pytest.approx(50 / 3) and methods["patches_fast"]["top1"] == 100.0
    )
    # early exit at 0.5: (10 + 10 + 30) / 3 MACs, the third image wrong; at 0.95 every patch, as `accurate`
    assert methods["early_exit_0.5"]["multiply_adds"] == pytest.approx(50 / 3) and methods["early_exit_0.5"][
        "top1"
    ] == pytest.approx(200 / 3, abs=0.01)
    assert methods["early_exit_0.8"]["multiply_adds"] == pytest.approx((20 + 20 + 60) / 3)
    assert (
        methods["early_exit_0.95"]["multiply_adds"] == pytest.approx(40) and methods["early_exit_0.95"]["top1"] == 100.0
    )
    assert (
        methods["resized_63"]["top1"] == pytest.approx(200 / 3, abs=0.01)
        and methods["resized_63"]["multiply_adds"] == 10
    )


def test_budgets_report_what_the_kept_patches_cost(report):
    methods = {m["key"]: m for m in report["methods"]}
    # budget 0.3 of 100 MACs: image 1 keeps three 63s (30), image 2 both 63s (20), image 3 one 111 (30)
    assert methods["budget_0.3"]["multiply_adds"] == pytest.approx(80 / 3) and methods["budget_0.3"][
        "top1"
    ] == pytest.approx(200 / 3, abs=0.01)
    assert methods["budget_0.4"]["multiply_adds"] == pytest.approx((40 + 20 + 30) / 3)
    assert methods["budget_1"]["multiply_adds"] == pytest.approx(40)  # every accurate patch fits
    # with early exit, the first patch: (10 + 10 + 30) / 3
    assert methods["budget_0.55_early_exit_0.8"]["multiply_adds"] == pytest.approx(50 / 3)
    assert "AnchorNet costs 0.50x" in report["anchornet"]["savings"]
    assert report["anchornet"]["savings"] in table(report)


def test_table4_localization_and_branch_tables(report):
    row63 = report["table4"][0]["trained_for_input"]
    assert row63["one_patch"] == 100.0 and row63["gain"] == pytest.approx(100 / 3, abs=0.01)
    assert report["branches"]["63"]["images"] == 2 and report["branches"]["95"]["images"] == 0
    assert report["branches"]["63"]["first_patch_contains_centre"] == 50.0
    assert report["branches"]["63"]["first_patch_contains_digit"] == 50.0
    assert report["branches"]["111"]["first_patch_contains_centre"] == 100.0
    assert report["branches"]["63"]["patches_per_image"] == {"fast": 1.0, "visual": 1.5, "accurate": 3.0}
    assert report["branch_vs_scale"]["counts"] == [[2, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert report["anchornet"]["multiply_adds_over_full"] == 0.5
    # AnchorNet decides wrong on the third image only, where the visual patches are wrong and the accurate ones right
    assert report["patch_top1_by_anchornet_class"]["patches_visual"] == {
        "anchornet_right": 100.0,
        "anchornet_wrong": 0.0,
    }
    assert report["patch_top1_by_anchornet_class"]["patches_accurate"] == {
        "anchornet_right": 100.0,
        "anchornet_wrong": 100.0,
    }
    assert report["anchornet"]["top1_decided_class"] == pytest.approx(200 / 3, abs=0.01)
    text = table(report)
    assert "patches, visual preset" in text and "early exit at 0.8" in text and "B95" in text
