"""An Evaluation as numbers: top-1 overall and per class, multiply-adds and paired times per image, as JSON.

`summarize` gives the JSON-ready dict that `anchor-edge eval --json` prints;
the terminal table and the PNG are drawn from it (anchor_edge/evaluation/report.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anchor_edge.evaluation.score import Evaluation, ImageResult

#: The three classifiers scored, in table order: the method, its downstream on the whole image, AnchorNet alone.
CLASSIFIERS = ("pipeline", "full_image", "anchornet")


def summarize(evaluation: Evaluation) -> dict:
    """Everything measured: settings, counts, skipped files, top-1, per class, multiply-adds, time, per image."""
    results = evaluation.results
    return {
        "bundle": str(evaluation.bundle),
        "backend": evaluation.backend,
        "data": str(evaluation.folder.root),
        "split": str(evaluation.folder.split),
        "settings": dict(evaluation.settings),
        "images": len(results),
        "skipped": [{"path": str(path), "reason": reason} for path, reason in evaluation.skipped],
        "top1": top1(results),
        "per_class": per_class(results, evaluation.class_names),
        "multiply_adds": multiply_adds(evaluation),
        "time_ms": paired_times(results),
        "predictions": [_image(result, evaluation.class_names) for result in results],
    }


def top1(results: Sequence[ImageResult]) -> dict[str, float]:
    """The share of images each classifier gets right."""
    labels = np.array([r.label for r in results])
    return {name: round(float(np.mean([getattr(r, name) for r in results] == labels)), 6) for name in CLASSIFIERS}


def per_class(results: Sequence[ImageResult], class_names: Sequence[str]) -> list[dict]:
    """Top-1 of each classifier on each class that has images, in the bundle's class order."""
    rows = []
    for class_id, name in enumerate(class_names):
        members = [r for r in results if r.label == class_id]
        if members:
            rows.append({"class": name, "images": len(members), **top1(members)})
    return rows


def multiply_adds(evaluation: Evaluation) -> dict:
    """The downstream's multiply-adds per image, Pipeline (mean over images) and full image; None where a size's
    count is not in bundle.json."""
    spent = [r.downstream_multiply_adds for r in evaluation.results]
    full = evaluation.full_image_multiply_adds
    if full is None or None in spent:
        return {"pipeline_downstream_mean": None, "full_image": full, "anchornet": evaluation.anchornet_multiply_adds}
    mean = float(np.mean(spent))
    return {
        "pipeline_downstream_mean": round(mean),
        "full_image": full,
        "pipeline_downstream_share": round(mean / full, 6),
        "anchornet": evaluation.anchornet_multiply_adds,
    }


def paired_times(results: Sequence[ImageResult]) -> dict:
    """Per-image milliseconds of each side (median, mean) and the median of the per-image ratio pipeline / full."""
    pipeline = np.array([r.pipeline_ms for r in results])
    full = np.array([r.full_image_ms for r in results])
    return {
        "pipeline": {"median": round(float(np.median(pipeline)), 3), "mean": round(float(pipeline.mean()), 3)},
        "full_image": {"median": round(float(np.median(full)), 3), "mean": round(float(full.mean()), 3)},
        "pipeline_over_full_paired": round(float(np.median(pipeline / full)), 4),
    }


def agreement(first: Evaluation, second: Evaluation) -> dict:
    """How often two evaluations of the same images give the same class, per classifier, on the images both read."""
    theirs = {r.path: r for r in second.results}
    common = [(r, theirs[r.path]) for r in first.results if r.path in theirs]
    if not common:
        return {"images": 0, **dict.fromkeys(CLASSIFIERS)}
    return {
        "images": len(common),
        **{
            name: round(float(np.mean([getattr(a, name) == getattr(b, name) for a, b in common])), 6)
            for name in CLASSIFIERS
        },
    }


def _image(result: ImageResult, class_names: Sequence[str]) -> dict:
    return {
        "path": str(result.path),
        "label": class_names[result.label],
        **{name: class_names[getattr(result, name)] for name in CLASSIFIERS},
        "patches": result.patches,
        "downstream_multiply_adds": result.downstream_multiply_adds,
        "pipeline_ms": round(result.pipeline_ms, 3),
        "full_image_ms": round(result.full_image_ms, 3),
    }
