"""The three things measured per bundle: the patch pipeline, the full image, and the resized image.

All three start from the same decoded BGR photos and run the same
downstream session, so the only difference between them is the method:

* pipeline: `Pipeline.predict_batch` end to end (docs/method.md §3-§5), with
  its own per-stage timings and the time spent inside each model;
* full image: preprocess, then the downstream network on the 224x224 crop
  (the paper's baseline, Table 3 "full image");
* resized: preprocess, then the crop resized to the patch size of the branch
  the pipeline chose for that image (paper Table 4's "rescaling" counterpart:
  same input size and cost as one patch, but no localization).

A batch is a list of (photo index, BGR image).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from anchor_edge.pipeline import Pipeline, softmax
from anchor_edge.preprocess import normalize, resize_and_crop
from anchor_edge.schema import INPUT_NAME, LOGITS_OUTPUT
from benchmarks.measure import Item, TimedRunner

Batch = Sequence[tuple[int, np.ndarray]]


class Choice(NamedTuple):
    """What the pipeline did with one photo: the branch's patch size and the number of patches."""

    patch_size: int
    patches: int


def instrument(pipeline: Pipeline) -> tuple[TimedRunner, TimedRunner]:
    """Swap the pipeline's runners for timing wrappers; returns (anchornet, downstream) timers."""
    pipeline.anchornet = TimedRunner(pipeline.anchornet)
    pipeline.downstream = TimedRunner(pipeline.downstream)
    return pipeline.anchornet, pipeline.downstream


def choices(pipeline: Pipeline, photos: Sequence[np.ndarray]) -> list[Choice]:
    """Run the pipeline once per photo (batch 1) and record its branch and patch count."""
    predictions = [pipeline(photo) for photo in photos]
    for timer in (pipeline.anchornet, pipeline.downstream):
        timer.take()
    return [Choice(p.branch, len(p.boxes)) for p in predictions]


def pipeline_item(pipeline: Pipeline) -> Item:
    """The whole method; breakdown: the pipeline's stage timings plus model_* and device times."""
    anchornet, downstream = pipeline.anchornet, pipeline.downstream

    def call(batch: Batch) -> Mapping[str, float]:
        prediction = pipeline.predict_batch([image for _, image in batch])[0]
        breakdown = dict(prediction.timings)
        for role, timer in (("anchornet", anchornet), ("downstream", downstream)):
            breakdown[f"model_{role}"], device = timer.take()
            breakdown |= {f"{role}_{key}": ms for key, ms in device.items()}
        return breakdown

    return call


def full_image_item(pipeline: Pipeline) -> Item:
    """The downstream network on the 224x224 network input of every photo."""
    return _baseline(pipeline, resize_to=None)


def resized_item(pipeline: Pipeline, chosen: Sequence[Choice]) -> Item:
    """The downstream network on each photo's crop resized to its chosen branch's patch size."""
    return _baseline(pipeline, resize_to=[c.patch_size for c in chosen])


def _baseline(pipeline: Pipeline, resize_to: Sequence[int] | None) -> Item:
    bundle, downstream = pipeline.bundle, pipeline.downstream
    entry = bundle.downstream

    def call(batch: Batch) -> Mapping[str, float]:
        begin = time.perf_counter()
        groups: dict[int, list[np.ndarray]] = {}
        for index, image in batch:
            crop, _ = resize_and_crop(image, bundle.resize_short, bundle.crop)
            size = bundle.crop if resize_to is None else resize_to[index]
            if size != bundle.crop:
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            groups.setdefault(size, []).append(crop)
        preprocess_ms = (time.perf_counter() - begin) * 1e3
        for crops in groups.values():
            logits = downstream.run({INPUT_NAME: normalize(np.stack(crops), entry.mean, entry.std)}, [LOGITS_OUTPUT])
            softmax(logits[LOGITS_OUTPUT]).argmax(axis=1)
        model_ms, device = downstream.take()
        total_ms = (time.perf_counter() - begin) * 1e3
        return {"preprocess": preprocess_ms, "downstream": total_ms - preprocess_ms, "model_downstream": model_ms} | {
            f"downstream_{key}": ms for key, ms in device.items()
        }

    return call
