"""An evaluation summary (anchor_edge/evaluation/summary.py) as a terminal table and as a PNG figure."""

from __future__ import annotations

from pathlib import Path

from anchor_edge.errors import InputError
from anchor_edge.evaluation.summary import CLASSIFIERS

HEADINGS = {"pipeline": "pipeline", "full_image": "full image", "anchornet": "AnchorNet"}
#: Per-class rows shown on the terminal; the rest are in --json and --png.
CLASS_ROWS = 30


def table(summary: dict, compared: dict | None = None) -> str:
    """The terminal report: settings, top-1 overall and per class, multiply-adds, paired time, a comparison."""
    settings = summary["settings"]
    lines = [
        f"bundle {summary['bundle']} on {summary['backend']} (preset {settings['preset']}, "
        f"branch {settings['branch_rule']}, heatmap {settings['heatmap']}, anchor vote {settings['anchor_vote']}, "
        f"budget {settings['budget']}, early exit {settings['early_exit']}): "
        f"{summary['images']} images of {summary['split']}",
    ]
    if summary["skipped"]:
        lines.append(f"{len(summary['skipped'])} image file(s) skipped (unreadable or unlabelled): listed in --json")
    name_width = max([len("all"), *(len(row["class"]) for row in summary["per_class"])]) + 8
    lines += ["", f"{'top-1':<{name_width}}" + "".join(f"{HEADINGS[c]:>12}" for c in CLASSIFIERS)]
    rows = [{"class": "all", "images": summary["images"], **summary["top1"]}, *summary["per_class"][:CLASS_ROWS]]
    for row in rows:
        label = f"{row['class']} ({row['images']})"
        lines.append(f"{label:<{name_width}}" + "".join(f"{_percent(row[c]):>12}" for c in CLASSIFIERS))
    if len(summary["per_class"]) > CLASS_ROWS:
        lines.append(f"... {len(summary['per_class']) - CLASS_ROWS} more classes in --json")
    lines += ["", _multiply_adds(summary["multiply_adds"]), _times(summary["time_ms"])]
    if compared is not None:
        lines += ["", *_comparison(summary, compared)]
    return "\n".join(lines)


def require_matplotlib() -> None:
    """Raise InputError when matplotlib, which --png draws with, is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise InputError("--png needs matplotlib: pip install 'anchor-edge[bench]' (or matplotlib)") from error


def save_png(path: Path, summary: dict, compared: dict | None = None) -> Path:
    """Per-class top-1 of the three classifiers, and each image's paired time (pipeline against full image).

    Raises:
        InputError: matplotlib is not installed.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [{"class": "all", **summary["top1"]}, *summary["per_class"]]
    figure, (bars, times) = plt.subplots(1, 2, figsize=(max(8.0, 4.0 + 0.5 * len(rows)), 4.5))
    positions = np.arange(len(rows))
    for k, name in enumerate(CLASSIFIERS):
        bars.bar(positions + (k - 1) * 0.27, [100 * row[name] for row in rows], width=0.27, label=HEADINGS[name])
    bars.set_xticks(positions, [row["class"] for row in rows], rotation=45 if len(rows) > 6 else 0, ha="right")
    bars.set_ylabel("top-1 (%)")
    bars.set_ylim(0, 100)
    bars.set_title(f"top-1 on {summary['images']} images")
    bars.legend(fontsize="small")
    for result, marker in ((summary, "o"), (compared, "x")):
        if result is not None:
            full = [p["full_image_ms"] for p in result["predictions"]]
            pipeline = [p["pipeline_ms"] for p in result["predictions"]]
            times.scatter(full, pipeline, s=10, marker=marker, label=f"{result['bundle']} ({result['backend']})")
    limit = max(max(p["full_image_ms"], p["pipeline_ms"]) for p in summary["predictions"])
    times.plot([0, limit], [0, limit], color="grey", linewidth=0.8, label="same time")
    times.set_xlabel("full image (ms per image)")
    times.set_ylabel("pipeline (ms per image)")
    times.set_title("paired time per image")
    times.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def _millions(value: int) -> str:
    return f"{value / 1e6:.1f} M"


def _multiply_adds(counts: dict) -> str:
    if counts["pipeline_downstream_mean"] is None:
        return "downstream multiply-adds: not recorded per input size in bundle.json (re-export the bundle)"
    line = (
        f"downstream multiply-adds per image: pipeline {_millions(counts['pipeline_downstream_mean'])} "
        f"({counts['pipeline_downstream_share']:.2f} of the full image's {_millions(counts['full_image'])})"
    )
    return line if counts["anchornet"] is None else f"{line}; AnchorNet adds {_millions(counts['anchornet'])}"


def _times(times: dict) -> str:
    return (
        f"time per image (median): pipeline {times['pipeline']['median']:.2f} ms, "
        f"full image {times['full_image']['median']:.2f} ms; "
        f"paired ratio pipeline / full image {times['pipeline_over_full_paired']:.2f}"
    )


def _comparison(first: dict, second: dict) -> list[str]:
    agreement = second["agreement"]
    labels = [f"{result['bundle']} ({result['backend']})" for result in (first, second)]
    same = f"same class ({agreement['images']} images)"
    width = max(len(text) for text in (*labels, same)) + 2
    lines = [
        f"{'compared':<{width}}" + "".join(f"{HEADINGS[c]:>12}" for c in CLASSIFIERS) + f"{'pipeline ms':>14}",
    ]
    for label, result in zip(labels, (first, second)):
        lines.append(
            f"{label:<{width}}"
            + "".join(f"{_percent(result['top1'][c]):>12}" for c in CLASSIFIERS)
            + f"{result['time_ms']['pipeline']['median']:>14.2f}"
        )
    lines.append(f"{same:<{width}}" + "".join(f"{_percent(agreement[c]):>12}" for c in CLASSIFIERS))
    return lines
