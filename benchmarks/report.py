"""Turn raw interleaved samples into the numbers we publish: statistics, ratios, table, JSON and chart.

Every number the table prints comes from the dictionary `batch_result`
builds, and the JSON is that dictionary, so the two cannot disagree.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from benchmarks.measure import paired_ratio, summarize

PIPELINE, FULL, RESIZED = "pipeline", "full_image", "resized"
#: The pipeline's stages as the issue names them, each from Prediction.timings keys.
STAGE_GROUPS = {
    "preprocess": ("preprocess",),
    "anchornet": ("anchornet",),
    "decision+lsp": ("decision", "lsp"),
    "crop+grouping": ("crop",),
    "downstream_63": ("downstream_63",),
    "downstream_95": ("downstream_95",),
    "downstream_111": ("downstream_111",),
    "aggregation": ("aggregate",),
}
DEVICE_KEYS = ("h2d_ms", "compute_ms", "d2h_ms")


def batch_result(samples: Mapping[str, Mapping[str, list[float]]], labels: Sequence[str], batch_size: int) -> dict:
    """Statistics per item and stage, throughput, and the side-by-side ratios for one batch size."""
    items: dict[str, dict] = {}
    for name, series in samples.items():
        rounds = len(series["wall"])
        stages = {}
        for group, keys in (
            STAGE_GROUPS.items()
            if name.endswith(PIPELINE)
            else [("preprocess", ("preprocess",)), ("downstream", ("downstream",))]
        ):
            present = [k for k in keys if k in series]
            if present and all(len(series[k]) == rounds for k in present):
                stages[group] = summarize(np.sum([series[k] for k in present], axis=0))
            elif present:  # a patch size that only some batches used: statistics over those batches
                stages[group] = summarize(series[present[0]]) | {"share_of_rounds": len(series[present[0]]) / rounds}
        device = {key: summarize(values) for key, values in series.items() if key.split("_", 1)[-1] in DEVICE_KEYS}
        wall = summarize(series["wall"])
        items[name] = {"wall": wall, "throughput_images_per_s": batch_size * 1e3 / wall["mean"], "stages": stages}
        if device:
            items[name]["device"] = device
    ratios, overhead = {}, {}
    for label in labels:
        pipe, full, resized = (samples[f"{label}:{kind}"] for kind in (PIPELINE, FULL, RESIZED))
        p50 = {kind: items[f"{label}:{kind}"]["wall"]["p50"] for kind in (PIPELINE, FULL, RESIZED)}
        ratios[label] = {
            "pipeline_over_full_p50": p50[PIPELINE] / p50[FULL],
            "pipeline_over_full_paired": paired_ratio(pipe["wall"], full["wall"]),
            "resized_over_full_p50": p50[RESIZED] / p50[FULL],
            "resized_over_full_paired": paired_ratio(resized["wall"], full["wall"]),
            "anchornet_over_full_model_paired": paired_ratio(pipe["model_anchornet"], full["model_downstream"]),
            "patches_over_full_model_paired": paired_ratio(pipe["model_downstream"], full["model_downstream"]),
        }
        host = np.asarray(pipe["wall"]) - np.asarray(pipe["model_anchornet"]) - np.asarray(pipe["model_downstream"])
        overhead[label] = {
            "ms": summarize(host),
            "share_of_pipeline_median": float(np.median(host / np.asarray(pipe["wall"]))),
            "model_anchornet_ms": summarize(pipe["model_anchornet"]),
            "model_downstream_ms": summarize(pipe["model_downstream"]),
        }
    first = samples[f"{labels[0]}:{PIPELINE}"]
    versus_first = {
        label: {
            key: paired_ratio(samples[f"{label}:{PIPELINE}"][key], first[key])
            for key in ("wall", "model_anchornet", "model_downstream")
        }
        for label in labels[1:]
    }
    return {
        "batch_size": batch_size,
        "rounds": len(next(iter(samples.values()))["wall"]),
        "items": items,
        "ratios": ratios,
        "host_overhead": overhead,
        "pipeline_versus_first_bundle_paired": versus_first,
    }


def table(result: dict) -> str:
    """One batch size as a fixed-width text table, milliseconds per batch."""
    columns = ("mean", "std", "min", "p50", "p90", "p99", "max")
    head = f"{'batch ' + str(result['batch_size']) + ' (' + str(result['rounds']) + ' rounds), ms per batch':<44}"
    lines = [head + "".join(f"{c:>9}" for c in columns) + f"{'img/s':>9}"]
    for name, item in result["items"].items():
        lines.append(
            f"{name:<44}"
            + "".join(f"{item['wall'][c]:9.2f}" for c in columns)
            + f"{item['throughput_images_per_s']:9.1f}"
        )
        for stage, stats in item["stages"].items():
            share = f"  (in {stats['share_of_rounds']:.0%} of batches)" if "share_of_rounds" in stats else ""
            lines.append(f"{'  ' + stage:<44}" + "".join(f"{stats[c]:9.2f}" for c in columns) + share)
        for key, stats in item.get("device", {}).items():
            lines.append(f"{'  [cuda events] ' + key:<44}" + "".join(f"{stats[c]:9.2f}" for c in columns))
    for label, ratio in result["ratios"].items():
        host = result["host_overhead"][label]
        lines.append(
            f"{label}: pipeline/full image {ratio['pipeline_over_full_p50']:.3f} (p50), "
            f"{ratio['pipeline_over_full_paired']:.3f} (paired); resized/full {ratio['resized_over_full_p50']:.3f}; "
            f"AnchorNet/full-image model {ratio['anchornet_over_full_model_paired']:.3f}; "
            f"host overhead {host['ms']['p50']:.2f} ms = {host['share_of_pipeline_median']:.1%} of the pipeline"
        )
    for label, ratio in result["pipeline_versus_first_bundle_paired"].items():
        lines.append(
            f"{label} / {next(iter(result['ratios']))} (same rounds): pipeline {ratio['wall']:.3f}, "
            f"AnchorNet model {ratio['model_anchornet']:.3f}, downstream model {ratio['model_downstream']:.3f}"
        )
    return "\n".join(lines)


def bundle_line(label: str, info: dict) -> str:
    """Which downstream the bundle runs, whether its weights mean anything, and whether the method can pay on it."""
    weights = info["downstream_weights"]
    if weights == "random":
        weights = "RANDOM weights: a latency bundle, its predictions mean nothing"
    return f"{label}: downstream {info['downstream']} ({weights}); {info['savings']}"


def cost_table(label: str, costs: dict) -> str:
    """Patches and multiply-adds per image, as measured on the benchmark photos."""
    patches = costs["patches_per_image"]
    lines = [
        f"{label}: {costs['images']} images; images per branch {costs['images_per_branch']}; "
        f"patches per image {patches['mean']:.2f} (per branch {_rounded(patches['per_branch_mean'])}); "
        f"histogram {patches['histogram']}"
    ]
    macs = costs["multiply_adds"]
    if macs:
        lines.append(
            f"{label}: multiply-adds per image: AnchorNet {macs['anchornet'] / 1e9:.3f} G + patches "
            f"{macs['patches_mean'] / 1e9:.3f} G = {macs['pipeline_mean'] / 1e9:.3f} G vs full image "
            f"{macs['full_image'] / 1e9:.3f} G ({macs['pipeline_over_full']:.3f}x; AnchorNet alone "
            f"{macs['anchornet_over_full']:.3f}x); resized {macs['resized_mean'] / 1e9:.3f} G"
        )
    return "\n".join(lines)


def environment(note: str | None) -> dict:
    """The machine and software the numbers were measured on."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": _nvidia_smi("name"),
        "gpu_driver": _nvidia_smi("driver_version"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "numpy",
                "opencv-python-headless",
                "opencv-python",
                "onnxruntime",
                "onnxruntime-gpu",
                "tensorrt",
                "pycuda",
            )
        },
        "cuda": _cuda_version(),
        "commit": _git_commit(),
        "note": note,
    }


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def write_chart(path: Path, report: dict) -> None:
    """Per-stage stacked bars (ms per image, mean) for each bundle's pipeline beside the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    width = max(5.5, 1.1 * len(results[0]["items"]))
    figure, axes = plt.subplots(1, len(results), figsize=(width * len(results), 5.2), squeeze=False)
    colours = dict(zip([*STAGE_GROUPS, "downstream", "other"], plt.get_cmap("tab10").colors))
    for axis, result in zip(axes[0], results):
        batch, drawn = result["batch_size"], set()
        for x, (name, item) in enumerate(result["items"].items()):
            bottom = 0.0
            for stage, stats in item["stages"].items():
                ms = stats["mean"] * stats.get("share_of_rounds", 1.0) / batch
                axis.bar(x, ms, bottom=bottom, color=colours[stage], label=None if stage in drawn else stage)
                drawn.add(stage)
                bottom += ms
            rest = item["wall"]["mean"] / batch - bottom
            if rest > 0:
                axis.bar(x, rest, bottom=bottom, color=colours["other"], label=None if "other" in drawn else "other")
                drawn.add("other")
        axis.set_xticks(
            range(len(result["items"])),
            [n.replace(":", "\n") for n in result["items"]],
            fontsize=7,
            rotation=30,
            ha="right",
        )
        axis.set_title(f"batch {batch}")
        axis.set_ylabel("ms per image (mean)")
        axis.legend(fontsize=7)
    env = report["environment"]
    load = env["load_average_1_5_15"]
    figure.suptitle(
        f"anchor-edge latency: {env['cpu_model']} ({env['cpu_cores']} cores), {report['settings']['backend']}"
        + (f", load average {load[0]:.1f} at start" if load else ""),
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {key: round(value, 2) for key, value in values.items()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi(field: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def _git_commit() -> str | None:
    """This checkout's short commit, with "-dirty" when tracked files have uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def _cuda_version() -> str | None:
    """The CUDA version pycuda was built against (what the TensorRT runner uses), without touching the GPU."""
    try:
        import pycuda.driver
    except ImportError:
        return None
    return ".".join(str(part) for part in pycuda.driver.get_version())


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
