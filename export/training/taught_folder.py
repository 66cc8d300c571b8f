"""A user's folder whose training samples carry the teacher's centre of their class: box supervision without boxes.

The teacher (`export.training.teacher`) maps each training file once, on the
file's whole RESIZE_SHORT square and for the file's own label, a batch of
files per forward pass; a training sample, a random crop of that square
(`ImageFolder.view`), then takes the map's peak within its crop as the
object's centre (`LabelledImage.centre`). Held-out samples stay as they are:
they are measured, not taught.

The maps are cached in the work dir with the seconds they cost, so a resumed
run neither recomputes them nor forgets that the budget paid for them
(`export.training.folder_steps` takes those seconds from AnchorNet's share).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anchor_edge.errors import InputError
from export.data.folder import CROP, RESIZE_SHORT, ImageFolder
from export.data.source import TRAIN, LabelledImage
from export.training.common import (
    Normalization,
    autocast,
    load_checkpoint,
    pick_device,
    save_checkpoint,
    to_network_tensor,
)
from export.training.distractors import with_distractors
from export.training.teacher import Teacher, peak_in

LOG = logging.getLogger("anchor_edge.train")
#: Files per teacher forward pass.
TEACHER_BATCH = 32
#: Save the cache every this many batches, so a stop loses little.
SAVE_EVERY = 50


class TaughtFolder:
    """An ImageFolder whose training samples also carry the teacher's centre (a DataSource, export/data/source.py)."""

    has_boxes = False
    has_easy = False
    has_centres = True

    def __init__(self, folder: ImageFolder, maps: np.ndarray, teacher_id: str) -> None:
        if len(maps) != folder.count(TRAIN):
            raise ValueError(f"{len(maps)} teacher maps for {folder.count(TRAIN)} training files")
        self.folder = folder
        self.maps = maps
        self.class_names = folder.class_names
        self.name = f"{folder.name}, taught by {teacher_id}"  # other weights teach other centres: another run

    def count(self, split: str) -> int:
        return self.folder.count(split)

    def sample(self, split: str, index: int, seed: int = 0, *, easy: bool = False) -> LabelledImage:
        """The folder's sample; on the training split with the teacher's peak within its crop as `centre`, and
        distractors away from it (`export.training.distractors`)."""
        sample = self.folder.sample(split, index, seed, easy=easy)
        if split != TRAIN:
            return sample
        position, top, left, mirrored = self.folder.view(split, index, seed)
        centre = peak_in(self.maps[position], RESIZE_SHORT, top, left, CROP, mirrored)
        return sample._replace(image=with_distractors(sample.image, centre, seed, index), centre=centre)


def teach(
    folder: ImageFolder,
    teacher: Teacher,
    normalization: Normalization,
    cache: Path,
    teacher_id: str,
    limit_seconds: float | None = None,
) -> tuple[TaughtFolder, dict]:
    """The folder with the teacher's map of every training file, and a report (files, seconds spent on the maps).

    `teacher_id` names the teacher's weights: a cache made by other weights,
    or for other files, is recomputed. `limit_seconds` is what the maps may
    take in all (those of a stopped run included): past it they stop
    between two batches, kept in `cache` for a rerun.

    Raises:
        InputError: the maps were not done within `limit_seconds`, or `cache` is damaged.
    """
    files, limit = folder.files[TRAIN], math.inf if limit_seconds is None else limit_seconds
    key = hashlib.sha256("\n".join([teacher_id, *(f"{path}:{label}" for path, label in files)]).encode()).hexdigest()
    state = _cached(cache, key, len(files))
    maps, spent_before, start = list(state["maps"]), float(state["seconds"]), time.monotonic()
    device = pick_device()
    teacher.module.to(device).to(memory_format=torch.channels_last)  # with autocast: 3x float32's images/s here
    progress = tqdm(total=len(files), initial=len(maps), desc="teacher maps", unit="image", mininterval=10)
    for batch, begin in enumerate(range(len(maps), len(files), TEACHER_BATCH)):
        positions = range(begin, min(begin + TEACHER_BATCH, len(files)))
        inputs = to_network_tensor([folder.square(TRAIN, p) for p in positions], normalization).to(device)
        labels = torch.tensor([files[p][1] for p in positions], device=device)
        with autocast(device):
            cams = teacher.maps(inputs.contiguous(memory_format=torch.channels_last), labels)
        maps += list(cams.half().cpu())
        progress.update(len(positions))
        seconds = spent_before + time.monotonic() - start
        out_of_time = seconds >= limit and positions.stop < len(files)
        if (batch + 1) % SAVE_EVERY == 0 or positions.stop == len(files) or out_of_time:
            save_checkpoint(cache, {"key": key, "maps": torch.stack(maps), "seconds": seconds})
        if out_of_time:
            progress.close()
            raise InputError(maps_out_of_time(len(maps), len(files), seconds, limit, cache))
    progress.close()
    seconds = spent_before + time.monotonic() - start
    LOG.info("teacher %s: maps of %d training files (%.0f s)", teacher.name, len(files), seconds)
    report = {"teacher": teacher.name, "files": len(files), "seconds": round(seconds, 2)}
    return TaughtFolder(folder, torch.stack(maps).float().numpy(), teacher_id), report


def _cached(cache: Path, key: str, files: int) -> dict:
    """The maps kept in `cache` for this teacher and these files, or an empty start where there are none (or they
    were made by other weights, or for other files).

    Raises:
        InputError: the cache is for these files but damaged (unreadable, or not maps of at most `files` images).
    """
    state = load_checkpoint(cache)
    if not isinstance(state, dict) or state.get("key") != key:
        return {"key": key, "maps": torch.zeros(0), "seconds": 0.0}
    maps, seconds = state.get("maps"), state.get("seconds")
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or len(maps) > files or not isinstance(seconds, float):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputError(
            f"{cache} holds no teacher maps of these {files} training files (maps {shape}, seconds {seconds!r}): "
            "it is damaged; delete it to make the maps anew"
        )
    return state


def maps_out_of_time(done: int, files: int, seconds: float, limit_seconds: float, cache: Path) -> str:
    """Why AnchorNet did not train: its share of the budget went to the teacher's maps."""
    return (
        f"the teacher's maps of {done} of {files} training files took {seconds:.0f} s, AnchorNet's whole share of "
        f"the budget ({limit_seconds:.0f} s): they are kept in {cache}, and a rerun with more minutes "
        "(--budget-minutes) goes on from them while the teacher's weights are the same (a downstream trained "
        "by this command's full step changes when that step trains further, and its maps are then made anew)"
    )
