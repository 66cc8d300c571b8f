"""From benchmarks/accuracy.py's per-image records to the report: numbers, a table, a chart.

Multiply-adds are the downstream network's only (the paper's Table 3
convention: AnchorNet is not counted), from the counts the export recorded
per input size (bundle.json models.downstream.multiply_adds, baselines.json
likewise); AnchorNet's own are reported beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from anchor_edge.bundle.baselines import BaselineEntry
from anchor_edge.bundle.schema import Manifest
from anchor_edge.method.budget import savings_note
from export.data.digits import SCALE_FIELDS

PRESET_NAMES = ("fast", "visual", "accurate")
#: Early-exit confidences benchmarked on the `accurate` preset's patches.
EARLY_EXIT_THRESHOLDS = (0.5, 0.8, 0.95)


#: Cost budgets (shares of the full image's downstream multiply-adds) benchmarked on the `accurate` preset's patches,
#: alone and with early exit at BUDGET_EARLY_EXIT.
BUDGETS = (0.3, 0.4, 0.55, 0.75, 1.0)
BUDGET_EARLY_EXIT = 0.8


def early_exit_key(threshold: float) -> str:
    return f"early_exit_{threshold:g}"


def budget_key(budget: float, early_exit: float | None = None) -> str:
    return f"budget_{budget:g}" + ("" if early_exit is None else f"_{early_exit_key(early_exit)}")


def summarize(records: Sequence[dict], manifest: Manifest, full: BaselineEntry, resized: BaselineEntry) -> dict:
    """Every figure of the benchmark, as plain JSON-ready values; `full` and `resized` are the baselines' entries."""
    ours = manifest.models.downstream.multiply_adds
    full_cost = full.multiply_adds[224]
    resized_cost = resized.multiply_adds

    def top1(key: str, rows: Sequence[dict] = records) -> float | None:
        return _percent([row[key] == row["label"] for row in rows])

    def method(name: str, key: str, cost: float) -> dict:
        return {
            "method": name,
            "key": key,
            "top1": top1(key),
            "multiply_adds": cost,
            "over_full": round(cost / full_cost, 4),
        }

    methods = [
        method("full image (full-trained downstream)", "full", full_cost),
        method("full image (bundle's patch-tuned downstream)", "full_bundle", ours[224]),
    ]

    def patch_cost(key: str) -> float:
        return float(np.mean([sum(ours[s] for s in row[f"patch_sizes_{key}"]) for row in records]))

    for preset in PRESET_NAMES:
        methods.append(method(f"patches, {preset} preset", f"patches_{preset}", patch_cost(f"patches_{preset}")))
    for threshold in EARLY_EXIT_THRESHOLDS:
        key = early_exit_key(threshold)
        methods.append(method(f"patches, accurate, early exit at {threshold:g}", key, patch_cost(key)))
    for budget in BUDGETS:
        methods.append(
            method(f"patches, accurate, budget {budget:g}", budget_key(budget), patch_cost(budget_key(budget)))
        )
        key = budget_key(budget, BUDGET_EARLY_EXIT)
        methods.append(
            method(f"patches, accurate, budget {budget:g} + early exit {BUDGET_EARLY_EXIT:g}", key, patch_cost(key))
        )
    for size in SCALE_FIELDS:
        methods.append(method(f"resized to {size} (resized-trained)", f"resized_{size}", resized_cost[size]))
        methods.append(method(f"one patch of {size} (patch-tuned)", f"one_patch_{size}", ours[size]))

    table4 = []
    for size in SCALE_FIELDS:
        entry = {"size": size}
        for label, patch_key, resized_key in (
            ("trained_for_input", f"one_patch_{size}", f"resized_{size}"),
            ("no_fine_tuning", f"one_patch_full_trained_{size}", f"resized_{size}_full_trained"),
        ):
            patch, resized = top1(patch_key), top1(resized_key)
            entry[label] = {"one_patch": patch, "resized": resized, "gain": round(patch - resized, 2)}
        table4.append(entry)

    branches = {}
    for index, size in enumerate(SCALE_FIELDS):
        rows = [row for row in records if row["branch"] == index]
        centre = [_contains_centre(row["first_box"], row["box"]) for row in rows]
        whole = [_contains_box(row["first_box"], row["box"]) for row in rows]
        branches[str(size)] = {
            "images": len(rows),
            "patches_per_image": {
                p: _mean([len(row[f"patch_sizes_patches_{p}"]) for row in rows]) for p in PRESET_NAMES
            },
            "first_patch_contains_centre": _percent(centre),
            "first_patch_contains_digit": _percent(whole),
        }
    scale_table = [
        [sum(1 for row in records if row["scale"] == s and row["branch"] == b) for b in range(3)] for s in range(3)
    ]
    scale_keys = ["full", "full_bundle", *(f"patches_{p}" for p in PRESET_NAMES)]
    per_scale = {
        str(SCALE_FIELDS[s]): {key: top1(key, [r for r in records if r["scale"] == s]) for key in scale_keys}
        for s in range(3)
    }
    anchornet = manifest.models.anchornet
    right = [r for r in records if r["anchor_class"] == r["label"]]
    wrong = [r for r in records if r["anchor_class"] != r["label"]]
    by_anchornet = {
        f"patches_{p}": {"anchornet_right": top1(f"patches_{p}", right), "anchornet_wrong": top1(f"patches_{p}", wrong)}
        for p in PRESET_NAMES
    }
    return {
        "images": len(records),
        "trained": manifest.trained,
        "pooling": None if anchornet.pooling is None else anchornet.pooling.value,
        "anchornet": {
            "top1_decided_class": round(100.0 * float(np.mean([r["anchor_class"] == r["label"] for r in records])), 2),
            "multiply_adds": anchornet.multiply_adds,
            "multiply_adds_over_full": round(anchornet.multiply_adds / full_cost, 4),
            "savings": savings_note(anchornet.multiply_adds, ours[manifest.preprocess.crop])[1],
        },
        "methods": methods,
        "table4": table4,
        "branches": branches,
        "first_patch_contains_centre": _percent([_contains_centre(r["first_box"], r["box"]) for r in records]),
        "branch_vs_scale": {
            "rows_true_scale": list(SCALE_FIELDS),
            "cols_chosen_branch": list(SCALE_FIELDS),
            "counts": scale_table,
        },
        "top1_per_scale": per_scale,
        "patch_top1_by_anchornet_class": by_anchornet,
    }


def table(report: Mapping) -> str:
    """The report as text tables."""
    lines = [
        f"{report['images']} test images; bundle trained: {report['trained']}; AnchorNet pooling: {report['pooling']}; "
        f"AnchorNet's own decided-class top-1 {report['anchornet']['top1_decided_class']:.2f} %",
        report["anchornet"]["savings"],
        "",
        f"{'method':<48} {'top-1 %':>8} {'MACs (M)':>10} {'x full':>7}",
    ]
    for m in report["methods"]:
        lines.append(f"{m['method']:<48} {m['top1']:>8.2f} {m['multiply_adds'] / 1e6:>10.2f} {m['over_full']:>7.3f}")
    right_share = report["anchornet"]["top1_decided_class"]
    lines += ["", f"patch top-1 % when AnchorNet's decided class is right ({right_share:.2f} % of images) / wrong:"]
    for key, split in report["patch_top1_by_anchornet_class"].items():
        lines.append(f"  {key:<18} {_text(split['anchornet_right']):>7} / {_text(split['anchornet_wrong'])}")
    lines += [
        "",
        "Table 4 analog: one patch per image vs rescaling to the same size (top-1 %)",
        f"{'size':>5} {'patch':>7} {'resized':>8} {'gain':>6}   | "
        f"no fine-tuning: {'patch':>6} {'resized':>8} {'gain':>6}",
    ]
    for row in report["table4"]:
        a, b = row["trained_for_input"], row["no_fine_tuning"]
        lines.append(
            f"{row['size']:>5} {a['one_patch']:>7.2f} {a['resized']:>8.2f} {a['gain']:>6.2f}   | "
            f"{'':>15} {b['one_patch']:>6.2f} {b['resized']:>8.2f} {b['gain']:>6.2f}"
        )
    lines += [
        "",
        f"{'branch':>6} {'images':>7} {'patches/img visual':>19} {'accurate':>9} "
        f"{'centre in 1st %':>16} {'digit in 1st %':>15}",
    ]
    for size, b in report["branches"].items():
        patches = b["patches_per_image"]
        lines.append(
            f"{'B' + size:>6} {b['images']:>7} {_text(patches['visual']):>19} {_text(patches['accurate']):>9} "
            f"{_text(b['first_patch_contains_centre']):>16} {_text(b['first_patch_contains_digit']):>15}"
        )
    lines += [
        "",
        "chosen branch (columns) against the digit's true scale (rows)",
        f"{'':>10}" + "".join(f"{'B' + str(k):>7}" for k in SCALE_FIELDS),
    ]
    for size, counts in zip(SCALE_FIELDS, report["branch_vs_scale"]["counts"]):
        lines.append(f"{'scale ' + str(size):>10}" + "".join(f"{c:>7}" for c in counts))
    return "\n".join(lines)


def write_chart(path: Path, report: Mapping) -> None:
    """Top-1 against downstream multiply-adds per image, one point per method (like the paper's Figure 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    methods = report["methods"]
    early_exit_label = "accurate preset, early exit at " + " / ".join(f"{t:g}" for t in EARLY_EXIT_THRESHOLDS)
    budgets = " / ".join(f"{b:g}" for b in BUDGETS)
    for prefix, colour, marker, label in (
        ("resized_", "tab:blue", "v", "resized to 63 / 95 / 111"),
        ("one_patch_", "tab:green", "^", "one localized patch of 63 / 95 / 111"),
        ("early_exit_", "tab:orange", "o", early_exit_label),
        ("budget_", "tab:purple", "D", f"accurate preset, budget {budgets}"),
        ("budget+exit", "tab:pink", "d", f"budget {budgets} + early exit {BUDGET_EARLY_EXIT:g}"),
    ):
        series = [m for m in methods if _in_series(m["key"], prefix) and m["top1"] is not None]
        axes.plot(
            [m["multiply_adds"] / 1e6 for m in series],
            [m["top1"] for m in series],
            color=colour,
            marker=marker,
            label=label,
        )
    for m in methods:
        if m["key"].startswith(("full", "patches_")) and m["top1"] is not None:
            colour, marker = ("k", "s") if m["key"].startswith("full") else ("tab:red", "o")
            axes.scatter(m["multiply_adds"] / 1e6, m["top1"], c=colour, marker=marker)
            axes.annotate(
                m["method"],
                (m["multiply_adds"] / 1e6, m["top1"]),
                fontsize=7,
                xytext=(4, -10),
                textcoords="offset points",
            )
    axes.legend(loc="lower right", fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("downstream multiply-adds per image (millions, log scale)")
    axes.set_ylabel("top-1 (%)")
    axes.set_title(f"digits on real photos, {report['images']} test images")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _in_series(key: str, prefix: str) -> bool:
    """Whether a method belongs to a chart series; "budget+exit" is the budgets with early exit."""
    if prefix == "budget+exit":
        return key.startswith("budget_") and "early_exit" in key
    if prefix == "budget_":
        return key.startswith("budget_") and "early_exit" not in key
    return key.startswith(prefix)


def _text(value: float | None) -> str:
    """Two decimals, or "-" where a branch took no image."""
    return "-" if value is None else f"{value:.2f}"


def _contains_centre(patch: Sequence[int], box: Sequence[int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return patch[0] <= cx < patch[2] and patch[1] <= cy < patch[3]


def _contains_box(patch: Sequence[int], box: Sequence[int]) -> bool:
    return patch[0] <= box[0] and patch[1] <= box[1] and box[2] <= patch[2] and box[3] <= patch[3]


def _percent(flags: Sequence[bool]) -> float | None:
    return round(100.0 * float(np.mean(flags)), 2) if flags else None


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None
