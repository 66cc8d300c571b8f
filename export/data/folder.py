"""A user's own labelled images: one subfolder per class, optionally split into train/ and a held-out set.

Layouts (class names are the subfolder names, sorted; files with an image
suffix are taken, in a class folder's subfolders too, others ignored):

    DIR/<class>/*.jpg                      every 5th file of each class (sorted by path) is held out
    DIR/train/<class>/*.jpg + DIR/val/<class>/*.jpg   (or test/ instead of val/): the split as given

Of the training files, every TUNE_EVERY-th of each class is held back as
the `TUNE` split when that makes at least MIN_TUNING_IMAGES: no model trains
on them, and the exported bundle's AnchorNet vote is chosen on them
(anchor_edge/method/anchor_vote.py). A smaller folder trains on them all.

Images are read once with the runtime's own decoder
(`anchor_edge.method.preprocess`), so what trains is what the bundle will
see; an image that cannot be read is reported and left out, never a crash
hours into training. Training samples are a random 224 crop of the
runtime's 256 x 256 square, randomly mirrored unless the folder is opened
with mirror=False (classes a mirror changes: digits, letters, signs);
held-out samples are exactly the runtime's centre crop.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anchor_edge.errors import InputError
from anchor_edge.evaluation.folder import HELD_OUT_EVERY, class_files, held_out_split, refuse_half_split
from anchor_edge.method.anchor_vote import MIN_TUNING_IMAGES
from anchor_edge.method.preprocess import load_image, resize_and_crop
from export.data.source import HELD_OUT, TRAIN, LabelledImage

LOG = logging.getLogger("anchor_edge.train")
RESIZE_SHORT, CROP = 256, 224
#: The split of training files held back to choose the AnchorNet vote on, and which of each class's files go there.
TUNE, TUNE_EVERY = "tune", 20


@dataclass(frozen=True)
class ImageFolder:
    """The labelled files of a folder, per split; a DataSource (export.data.source)."""

    root: Path
    class_names: tuple[str, ...]
    files: dict[str, tuple[tuple[Path, int], ...]]
    mirror: bool = True
    has_boxes = False
    has_easy = False
    has_centres = False

    @property
    def name(self) -> str:
        """The folder's absolute path, a digest of its files per split, and whether its training samples are
        mirrored (a DataSource's name): a file added or removed moves others between the splits, so a checkpoint
        trained on the folder before is another run's."""
        listing = "\n".join(
            f"{split} {path.relative_to(self.root)} {label}"
            for split in sorted(self.files)
            for path, label in self.files[split]
        )
        digest = hashlib.sha256(listing.encode()).hexdigest()[:12]
        return f"{self.root.resolve()} (files {digest}){'' if self.mirror else ' (never mirrored)'}"

    @classmethod
    def open(cls, root: str | Path, *, mirror: bool = True) -> "ImageFolder":
        """Find the classes and files under `root`, read every image once, and keep those that decode.

        mirror: whether training samples are mirrored at random (half of them).

        Raises:
            InputError: no such folder, fewer than two classes, or a class (or split) left without images.
        """
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"--data {root} is not a folder; give one subfolder of images per class")
        refuse_half_split(root)
        held_out = held_out_split(root)
        if held_out != root:
            class_names = _class_names(root / TRAIN)
            files = {TRAIN: _labelled(root / TRAIN, class_names), HELD_OUT: _labelled(held_out, class_names)}
        else:
            class_names = _class_names(root)
            every = _labelled(root, class_names)
            files = {TRAIN: [], HELD_OUT: []}
            for label in range(len(class_names)):
                members = [item for item in every if item[1] == label]
                for j, item in enumerate(members):
                    files[HELD_OUT if j % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else TRAIN].append(item)
        readable = _hold_back_tuning({split: tuple(_readable(items, split)) for split, items in files.items()})
        for split in (TRAIN, HELD_OUT):
            items = readable[split]
            empty = [class_names[c] for c in range(len(class_names)) if not any(label == c for _, label in items)]
            if empty:
                raise InputError(
                    f"{root}: no readable {split} images for class(es) {empty}; each class needs at least "
                    f"{HELD_OUT_EVERY} images, or give train/ and val/ folders"
                )
        return cls(root, class_names, readable, mirror)

    def count(self, split: str) -> int:
        return len(self._files(split))

    def sample(self, split: str, index: int, seed: int = 0, *, easy: bool = False) -> LabelledImage:
        """Sample `index` of `split`: training indices walk a seeded permutation of the files, one epoch per pass."""
        if easy:
            raise InputError("a folder of images has no easy curriculum samples")
        position, top, left, mirrored = self.view(split, index, seed)
        label = self._files(split)[position][1]
        crop = self.square(split, position)[top : top + CROP, left : left + CROP]
        return LabelledImage(np.ascontiguousarray(crop[:, ::-1] if mirrored else crop), label)

    def view(self, split: str, index: int, seed: int = 0) -> tuple[int, int, int, bool]:
        """Which file sample `index` shows and how: (its position in `files[split]`, crop top, crop left, mirrored).

        The crop is CROP x CROP of the file's RESIZE_SHORT square: random for
        training (seeded per index), the centre for held-out samples. A
        teacher's map of the file's square is read through the same view
        (`export.training.taught_folder`).
        """
        files = self._files(split)
        epoch, position = divmod(index, len(files))
        if split != TRAIN:
            middle = (RESIZE_SHORT - CROP) // 2
            return position, middle, middle, False
        order = np.random.default_rng([seed, epoch]).permutation(len(files))
        rng = np.random.default_rng([seed, index])
        top = int(rng.integers(RESIZE_SHORT - CROP + 1))
        left = int(rng.integers(RESIZE_SHORT - CROP + 1))
        mirrored = bool(rng.random() < 0.5)  # drawn either way, so mirror=False leaves the crops as they were
        return int(order[position]), top, left, mirrored and self.mirror

    def square(self, split: str, position: int) -> np.ndarray:
        """The RESIZE_SHORT x RESIZE_SHORT BGR square of file `position` of `split`, which `view` crops."""
        return _square(self._files(split)[position][0])

    def _files(self, split: str) -> tuple[tuple[Path, int], ...]:
        if split not in self.files:
            raise InputError(f"split must be one of {sorted(self.files)}, got {split!r}")
        return self.files[split]


def _hold_back_tuning(files: dict[str, tuple[tuple[Path, int], ...]]) -> dict[str, tuple[tuple[Path, int], ...]]:
    """The readable `files` with every TUNE_EVERY-th training file of each class (the middle one of each
    TUNE_EVERY) moved to TUNE, when that holds back at least MIN_TUNING_IMAGES; else `files` as they are."""
    position: dict[int, int] = {}
    tune, train = [], []
    for item in files[TRAIN]:
        j = position[item[1]] = position.get(item[1], -1) + 1
        (tune if j % TUNE_EVERY == TUNE_EVERY // 2 else train).append(item)
    return {**files, TRAIN: tuple(train), TUNE: tuple(tune)} if len(tune) >= MIN_TUNING_IMAGES else files


def _class_names(folder: Path) -> tuple[str, ...]:
    names = tuple(sorted(child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")))
    if len(names) < 2:
        raise InputError(
            f"{folder} has {len(names)} class folder(s); give one subfolder of images per class, at least two"
        )
    return names


def _labelled(folder: Path, class_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    items = []
    for label, name in enumerate(class_names):
        class_folder = folder / name
        if not class_folder.is_dir():
            raise InputError(f"{folder} has no folder for class {name!r}, which {folder.parent / TRAIN} has")
        items += [(path, label) for path in class_files(class_folder)]
    return items


def _readable(items: list[tuple[Path, int]], split: str) -> list[tuple[Path, int]]:
    """The items whose image decodes; the others are logged by name and left out."""
    kept = []
    for path, label in tqdm(items, desc=f"reading {split} images", unit="image", mininterval=5, leave=False):
        try:
            _square(path)
        except InputError as error:
            LOG.warning("left out %s: %s", path, error)
            continue
        kept.append((path, label))
    return kept


@functools.lru_cache(maxsize=4096)
def _square(path: Path) -> np.ndarray:
    """The runtime's 256 x 256 square of the image (docs/method.md §8), BGR; its centre 224 is the network input."""
    rgb, _ = resize_and_crop(load_image(path), RESIZE_SHORT, RESIZE_SHORT)
    return np.ascontiguousarray(rgb[:, :, ::-1])
