"""Confidence-based early exit: classify patches in LSP order, stop once the answer is clear.

The authors' later release (docs/method.md §6) stops classifying an image's
patches as soon as the patches seen so far agree with enough confidence,
which trades a little accuracy for fewer downstream calls. Our rule:

    After n patches, an image's confidence is the largest class probability
    of the running mean of its n patch softmaxes: max over classes of
    (p_1 + ... + p_n) / n. That is exactly the Prediction's `score` computed
    on those n patches (each softmax sums to 1). The image is done once its
    confidence is at least the threshold, or its patches run out.

So threshold 0 classifies exactly one patch per image (the first LSP box,
the most activated location), and a threshold above 1 never triggers: every
patch is classified and the result equals the plain pipeline.

Patches are classified in rounds, each one downstream call per patch size
over every image still undecided (docs/method.md §5's batching, applied per
round). Round sizes double: patches [0, 1), [1, 2), [2, 4), [4, 8), ... of
each image, so an image that needs all n patches costs ceil(log2(n)) + 1
calls rather than n (one patch per round made 24 sequential calls for a
B63 image and doubled its latency, measured: 100 ms against 53 ms for the
plain pipeline). Within a round the stopping point is still found patch by
patch; patches classified past it are dropped, so the result is exactly
that of classifying one patch at a time. The inputs are normalized once,
before the first round, so a round costs no more than its patches.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from anchor_edge.errors import InputError

#: classify(inputs, boxes per image) -> one (n_i, C) softmax array per image: Pipeline.classify_normalized
PatchClassifier = Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]


def check_threshold(threshold: float | None) -> float | None:
    """Validate an early-exit threshold: None (off) or a number >= 0 (above 1 means never exit early)."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise InputError(f"early_exit must be None or a finite number, got {threshold!r}")
    if threshold < 0:
        raise InputError(f"early_exit must be at least 0 (0 uses one patch per image), got {threshold}")
    return float(threshold)


def classify_until_confident(
    classify: PatchClassifier,
    inputs: np.ndarray,
    boxes: list[np.ndarray],
    threshold: float,
    num_classes: int,
) -> list[np.ndarray]:
    """Softmax of the first patches of each image, up to the first that makes it confident.

    Args:
        classify: the pipeline's `classify_normalized`, which cuts the boxes it is
            given from `inputs` and batches them by size across images.
        inputs: (N, 3, crop, crop) float32 network inputs, normalized for the
            downstream network once, so a round only cuts its patches.
        boxes: per image, its (n_i, 4) LSP boxes in LSP order.
        threshold: confidence at which an image stops (module docstring).
        num_classes: C, the width of the returned arrays.

    Returns:
        One (m_i, C) array per image, 1 <= m_i <= n_i (m_i = 0 only when n_i = 0):
        the softmax of its first m_i boxes, in LSP order.
    """
    sums = [np.zeros(num_classes, np.float64) for _ in boxes]
    used: list[list[np.ndarray]] = [[] for _ in boxes]
    undecided = {i for i, image_boxes in enumerate(boxes) if len(image_boxes)}
    start, stop = 0, 1
    while undecided:
        round_boxes = [
            image_boxes[start:stop] if i in undecided else image_boxes[:0] for i, image_boxes in enumerate(boxes)
        ]
        round_probs = classify(inputs, round_boxes)
        still_undecided = set()
        for i in sorted(undecided):
            for j, probs in enumerate(round_probs[i], start):
                used[i].append(probs)
                sums[i] += probs
                if sums[i].max() / (j + 1) >= threshold:
                    break
            else:
                if stop < len(boxes[i]):
                    still_undecided.add(i)
        undecided = still_undecided
        start, stop = stop, 2 * stop
    return [np.stack(rows) if rows else np.empty((0, num_classes), np.float32) for rows in used]


def classified_sizes(boxes: np.ndarray, used: int) -> tuple[int, ...]:
    """The sizes of the patches the rounds ran for an image that used the first `used` of its (n, 4) `boxes`.

    The round that reached patch `used` ran to its end, the least power of
    two not below `used` (rounds end at 1, 2, 4, 8, ...), or the image's last
    patch: those past `used` were classified and dropped, and cost as much.
    Without early exit `used` is len(boxes), and so are the sizes returned.
    """
    ran = 0 if used == 0 else min(len(boxes), 1 << (used - 1).bit_length())
    return tuple(int(size) for size in boxes[:ran, 2] - boxes[:ran, 0])
