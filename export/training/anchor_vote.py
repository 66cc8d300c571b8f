"""Choose a folder bundle's AnchorNet vote on the images its training held back (anchor_edge/method/anchor_vote.py).

The weight is a property of the two trained networks together: it pays
where AnchorNet classifies better than the patches do and costs where it
classifies worse (docs/decisions/032-anchornet-votes-in-the-class.md). So it
is read off the exported FP32 bundle, run by the runtime itself, on the
folder's `tune` split, which no training step saw: each image's summed patch
softmax and decided-branch probabilities once, then every candidate weight
on them at no further cost, computed as the runtime computes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anchor_edge.errors import InputError
from anchor_edge.method.anchor_vote import MIN_TUNING_IMAGES, choose_anchor_vote
from anchor_edge.method.preprocess import load_image

log = logging.getLogger("anchor_edge.train")
#: Images per Pipeline call.
BATCH = 32
_TOO_FEW = f"fewer than {MIN_TUNING_IMAGES} held-back images, where one image would move the choice: the paper's rule"


def vote_chooser(files: Sequence[tuple[Path, int]], report: dict) -> Callable[[Path], float]:
    """The `anchor_vote` function export_bundle calls on its staged bundle: the best weight on these labelled
    files (an unreadable one is left out), with what it measured put into `report`."""

    def choose(bundle_dir: Path) -> float:
        if len(files) < MIN_TUNING_IMAGES:  # a small folder holds none back (export.data.folder)
            report.update(images=len(files), weight=0.0, kept_because=_TOO_FEW)
            return 0.0
        started = time.perf_counter()
        means, votes, labels = _measure(bundle_dir, files)
        weight, top1 = choose_anchor_vote(means, votes, labels)
        report.update(
            images=len(labels),
            top1={str(w): round(accuracy, 4) for w, accuracy in top1.items()},
            weight=weight,
            seconds=round(time.perf_counter() - started, 1),
        )
        if len(labels) < MIN_TUNING_IMAGES:
            report["kept_because"] = _TOO_FEW
        log.info("AnchorNet vote %s (held-back top-1 by weight: %s)", weight, report["top1"])
        return weight

    return choose


def _measure(bundle_dir: Path, files: Sequence[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) mean patch softmax, (N, C) decided-branch probabilities and (N,) labels of the readable files."""
    from anchor_edge.pipeline import Pipeline

    means, votes, labels = [], [], []
    # With a vote of weight 1 each Prediction carries its decided branch's probabilities as they are.
    with Pipeline.from_bundle(bundle_dir, backend="onnxruntime", providers="cpu", anchor_vote=1.0) as pipe:
        bar = tqdm(total=len(files), desc="choosing AnchorNet's vote", unit="image", disable=None, leave=False)
        for start in range(0, len(files), BATCH):
            readable = []
            for path, label in files[start : start + BATCH]:
                try:
                    readable.append((load_image(path), label))
                except InputError as error:
                    log.warning("anchor vote: %s left out (%s)", path, error)
            for prediction, (_, label) in zip(pipe.predict_batch([image for image, _ in readable]), readable):
                means.append(prediction.patch_probs.mean(axis=0, dtype=np.float64))
                votes.append(prediction.anchor_scores)
                labels.append(label)
            bar.update(len(files[start : start + BATCH]))
        bar.close()
        classes = pipe.bundle.num_classes
    shape = (len(labels), classes)
    return np.array(means).reshape(shape), np.array(votes).reshape(shape), np.array(labels, int)
