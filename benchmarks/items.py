"""The three things measured per bundle: the patch pipeline, the full image, and the resized image.

All three start from the same decoded BGR photos and run the same
downstream session, so the only difference between them is the method:

* pipeline: `Pipeline.predict_batch` end to end (docs/method.md §3-§5), with
  its own per-stage timings and the time spent inside each model (anchor_edge/timing.py);
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

from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from anchor_edge.method.preprocess import normalize, resize_and_crop
from anchor_edge.pipeline import Pipeline, softmax
from anchor_edge.timing import StageClock
from benchmarks.measure import Item

Batch = Sequence[tuple[int, np.ndarray]]


class Choice(NamedTuple):
    """What the pipeline did with one photo: the branch's patch size and the number of patches."""

    patch_size: int
    patches: int


def choices(pipeline: Pipeline, photos: Sequence[np.ndarray]) -> list[Choice]:
    """Run the pipeline once per photo (batch 1) and record its branch and patch count."""
    return [Choice(p.branch, len(p.boxes)) for p in (pipeline(photo) for photo in photos)]


def pipeline_item(pipeline: Pipeline) -> Item:
    """The whole method; breakdown: the pipeline's own timings (stages, model_* and device times)."""

    def call(batch: Batch) -> Mapping[str, float]:
        return dict(pipeline.predict_batch([image for _, image in batch])[0].timings)

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
        clock = StageClock()
        for crops in groups.values():
            feeds = {INPUT_NAME: normalize(np.stack(crops), entry.mean, entry.std)}
            softmax(clock.run("downstream", downstream, feeds, [LOGITS_OUTPUT])[LOGITS_OUTPUT]).argmax(axis=1)
        total_ms = (time.perf_counter() - begin) * 1e3
        return {"preprocess": preprocess_ms, "downstream": total_ms - preprocess_ms, **clock.models}

    return call
