"""Score a Pipeline on labelled images: the pipeline, the downstream on the whole image, AnchorNet's class.

Each image is decoded once, then classified twice, back to back and timed
per image (paired): by the Pipeline (`predict_batch([image])`, the
method with its preset, budget and early exit), and by the bundle's own
downstream network on the whole network input (the 224 crop, one run). The
two alternate which goes first from image to image (A B, B A, ...), so
neither always runs on a warmer cache, and drift on a shared machine hits
both alike; the per-image ratio of their times is the paired figure.
AnchorNet's decided class (eq. 7) comes with the Pipeline's prediction.

Multiply-adds are exact, from bundle.json: the Pipeline's downstream cost of
an image is the sum over the patches it classified of the downstream's cost
at that patch size (with early exit, every patch of the rounds it ran:
`Prediction.classified_sizes`); the full image's is its cost at the crop size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from anchor_edge.errors import InputError
from anchor_edge.evaluation.folder import LabelledFolder
from anchor_edge.method.preprocess import load_image, normalize
from anchor_edge.pipeline import Pipeline
from anchor_edge.prediction import Prediction


@dataclass(frozen=True)
class ImageResult:
    """One image's label, the three classes, the patches the Pipeline paid for, and the paired times."""

    path: Path
    label: int
    pipeline: int
    full_image: int
    anchornet: int
    patches: int
    downstream_multiply_adds: int | None
    pipeline_ms: float
    full_image_ms: float


@dataclass(frozen=True)
class Evaluation:
    """Every image's result, the files left out with why, and what was measured."""

    bundle: Path
    backend: str
    class_names: tuple[str, ...]
    folder: LabelledFolder
    results: tuple[ImageResult, ...]
    skipped: tuple[tuple[Path, str], ...]
    settings: dict = field(default_factory=dict)
    full_image_multiply_adds: int | None = None
    anchornet_multiply_adds: int | None = None


def evaluate(
    pipe: Pipeline,
    folder: LabelledFolder,
    *,
    preset: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Evaluation:
    """Classify every image of `folder` with `pipe` and with its downstream on the whole image, timed in pairs.

    Args:
        pipe: an open Pipeline (its preset, budget and early exit are what is scored).
        folder: the labelled files (`read_labelled_folder`).
        preset: the LSP preset's name, recorded with the settings (None: the bundle's).
        progress: wraps the file list (a tqdm bar); None: no bar.

    Returns:
        The Evaluation; a file that cannot be read or classified is in `skipped` with the reason.

    Raises:
        BackendError: the backend failed on a readable image (not the image's fault).
        InputError: no image of the folder could be read.
    """
    costs, full_cost = downstream_costs(pipe)
    skipped = [(path, "not in a class folder, so no label") for path in folder.unlabelled]
    results: list[ImageResult] = []
    files = folder.files if progress is None else progress(folder.files)
    warm = False
    for path, label in files:
        try:
            image = load_image(path)
            if not warm:  # first calls allocate arenas and pick kernels: not the image's time
                pipe.predict_batch([image])
                full_image_class(pipe, image)
                warm = True
            order = (0, 1) if len(results) % 2 == 0 else (1, 0)
            measured = _paired(pipe, image, order)
        except InputError as error:
            skipped.append((path, str(error)))
            continue
        (prediction, pipeline_ms), (full_class, full_ms) = measured
        spent = None if costs is None else sum(costs[size] for size in prediction.classified_sizes)
        results.append(
            ImageResult(
                path,
                label,
                prediction.class_id,
                full_class,
                prediction.anchor_class,
                len(prediction.classified_sizes),
                spent,
                pipeline_ms,
                full_ms,
            )
        )
    if not results:
        unreadable = [pair for pair in skipped if pair[0] not in folder.unlabelled]
        first, why = (unreadable or skipped or [(folder.split, "no image files")])[0]
        raise InputError(f"--data {folder.split}: none of {len(skipped)} image file(s) could be read ({first}: {why})")
    return Evaluation(
        bundle=pipe.bundle.root,
        backend=pipe.backend,
        class_names=tuple(pipe.bundle.class_names),
        folder=folder,
        results=tuple(results),
        skipped=tuple(skipped),
        settings={
            "preset": preset or pipe.bundle.preset,
            "early_exit": pipe.early_exit,
            "budget": pipe.budget,
            "vote_min": pipe.vote_min,
            "branch_rule": pipe.branch_rule.value,
            "heatmap": pipe.heatmap.value,
            "anchor_vote": pipe.anchor_vote,
        },
        full_image_multiply_adds=full_cost,
        anchornet_multiply_adds=pipe.bundle.anchornet.multiply_adds,
    )


def full_image_class(pipe: Pipeline, image: np.ndarray) -> int:
    """The bundle's downstream network on the whole network input (the preprocessed crop): its top-1 class."""
    crops, _ = pipe.preprocess([image])
    entry = pipe.bundle.downstream
    logits = pipe.downstream.run({INPUT_NAME: normalize(crops, entry.mean, entry.std)}, [LOGITS_OUTPUT])
    return int(logits[LOGITS_OUTPUT][0].argmax())


def downstream_costs(pipe: Pipeline) -> tuple[dict[int, int] | None, int | None]:
    """({patch size: downstream multiply-adds}, the full crop's), each None where bundle.json lacks a size's count.

    A hand-edited or old bundle.json may leave a size out: its counts are then
    reported as not recorded, never guessed, and the images are still scored.
    """
    recorded = pipe.bundle.downstream.multiply_adds
    sizes = [branch.receptive_field for branch in pipe.bundle.branches]
    patches = {size: recorded[size] for size in sizes} if all(size in recorded for size in sizes) else None
    return patches, recorded.get(pipe.bundle.crop)


def _paired(pipe: Pipeline, image: np.ndarray, order: tuple[int, int]) -> tuple[tuple[Prediction, float], tuple]:
    """(the Pipeline's prediction, ms), (the full image's class, ms), run in `order` (0: Pipeline first)."""
    calls = (lambda: pipe.predict_batch([image])[0], lambda: full_image_class(pipe, image))
    measured: list = [None, None]
    for which in order:
        start = time.perf_counter()
        outcome = calls[which]()
        measured[which] = (outcome, (time.perf_counter() - start) * 1e3)
    return measured[0], measured[1]
