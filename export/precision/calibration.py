"""Real images for INT8 calibration, and the held-out ones the converted bundle is checked on.

Calibration sets each activation's INT8 range from what the network sees
at run time, so it must see real inputs, prepared exactly as the runtime
prepares them: AnchorNet gets preprocessed 224x224 images
(`anchor_edge.method.preprocess` through the FP32 Pipeline), the downstream network
gets the very patches the FP32 Pipeline localizes on those images, at their
native sizes (63, 95, 111), plus the 224 full image its baseline runs on.

The images come from a folder the user names (images, class subfolders, or
train/ and val/ splits of them: `folder_split`) or, by default, from images
that ship with the dependencies:

- a bundle of the digits benchmark (class names "0".."9", `export.data.digits`)
  calibrates on its train split and is checked on its test split;
- any other bundle uses the real photos that ship with scikit-image and
  scikit-learn (`export.data.photos`). Those are only 19 photos, so each is
  expanded into 12 deterministic views (whole, four corner crops and a centre
  crop, each also mirrored). The photos are split by identity: every third
  one (and all its views) is held out for the precision check and never
  calibrates.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from anchor_edge.bundle.schema import INPUT_NAME
from anchor_edge.errors import InputError
from anchor_edge.evaluation.folder import (
    HELD_OUT_EVERY,
    class_files,
    held_out_files,
    held_out_split,
    images_in,
    refuse_half_split,
)
from anchor_edge.method.patches import cut_by_size, locate
from anchor_edge.method.preprocess import load_image, normalize
from anchor_edge.pipeline import Pipeline
from anchor_edge.video.sources import IMAGE_SUFFIXES
from export.data.photos import real_photos

log = logging.getLogger("anchor_edge")

#: Fewer calibration images than this draws a warning: MinMax calibration
#: follows the scenes it sees, and below about 100 a single unusual scene
#: decides a range (docs/decisions/006-precision-check-and-calibration-images.md).
MIN_CALIBRATION_IMAGES = 100
#: Every PHOTO_HELD_OUT_EVERY-th bundled photo (with all its views) is kept for the check.
PHOTO_HELD_OUT_EVERY = 3
#: At most this many patches of one size calibrate the downstream network: the
#: MinMax ranges settle long before, and it bounds calibration time and memory.
MAX_PATCHES_PER_SIZE = 256
#: Digits-benchmark samples used by default (multiples of 30: balanced over
#: classes and scales). 480 held out, so that the check can judge a 95 % floor
#: (docs/decisions/006-precision-check-and-calibration-images.md).
DIGITS_CALIBRATION, DIGITS_HELD_OUT = 240, 480

Photo = tuple[str, np.ndarray]


@dataclass(frozen=True)
class ImageSet:
    """Named BGR uint8 images, where they came from (recorded in bundle.json) and their class ids when known."""

    images: list[Photo]
    source: str
    labels: list[int] | None = None


def photo_views(name: str, image: np.ndarray) -> list[Photo]:
    """Twelve deterministic views of one photo: whole, 4 corner crops (3/4 size), centre crop (3/5), each mirrored."""
    height, width = image.shape[:2]
    ch, cw = height * 3 // 4, width * 3 // 4
    sh, sw = height * 3 // 5, width * 3 // 5
    crops = {
        "whole": image,
        "top_left": image[:ch, :cw],
        "top_right": image[:ch, width - cw :],
        "bottom_left": image[height - ch :, :cw],
        "bottom_right": image[height - ch :, width - cw :],
        "centre": image[(height - sh) // 2 : (height - sh) // 2 + sh, (width - sw) // 2 : (width - sw) // 2 + sw],
    }
    views = []
    for view, crop in crops.items():
        views.append((f"{name}/{view}", np.ascontiguousarray(crop)))
        views.append((f"{name}/{view}/mirrored", np.ascontiguousarray(crop[:, ::-1])))
    return views


def bundled_photo_split() -> tuple[ImageSet, ImageSet]:
    """(calibration, held-out) views of the bundled real photos, split by photo identity."""
    photos = real_photos(include_gray=True)
    calibration = [p for i, p in enumerate(photos) if i % PHOTO_HELD_OUT_EVERY != PHOTO_HELD_OUT_EVERY - 1]
    held_out = [p for i, p in enumerate(photos) if i % PHOTO_HELD_OUT_EVERY == PHOTO_HELD_OUT_EVERY - 1]

    def views(chosen: list[Photo]) -> ImageSet:
        names = ", ".join(name for name, _ in chosen)
        return ImageSet(
            [view for name, image in chosen for view in photo_views(name, image)],
            f"12 deterministic crops/flips each of {len(chosen)} photos "
            f"shipped with scikit-image and scikit-learn ({names})",
        )

    return views(calibration), views(held_out)


def default_split(class_names: Sequence[str]) -> tuple[ImageSet, ImageSet]:
    """(calibration, held-out) images for a bundle with `class_names`: digits splits or the bundled photos."""
    from export.data import digits

    if tuple(class_names) != digits.CLASS_NAMES:
        return bundled_photo_split()
    return _digits_set("train", DIGITS_CALIBRATION), _digits_set("test", DIGITS_HELD_OUT)


def _digits_set(split: str, count: int) -> ImageSet:
    """The first `count` samples of a digits-benchmark split, with their labels."""
    from export.data import digits

    samples = [digits.make_sample(split, i) for i in range(count)]
    return ImageSet(
        [(f"digits/{split}/{i}", sample.image) for i, sample in enumerate(samples)],
        f"the first {count} samples of the digits benchmark's {split} split (export/data/digits.py)",
        [sample.label for sample in samples],
    )


def folder_images(folder: Path) -> ImageSet:
    """The calibration images of the user's folder (`folder_split`'s first set)."""
    return folder_split(folder)[0]


def folder_split(folder: Path, class_names: Sequence[str] = ()) -> tuple[ImageSet, ImageSet | None]:
    """(calibration, held-out) images of the user's folder, by path; the held-out set is None where it has none.

    Layouts (files with an image suffix; class folders searched recursively, hidden names ignored):

        DIR/*.jpg                             every image calibrates; no held-out images
        DIR/<class>/*.jpg (and DIR/*.jpg)     the files `python -m export.train` holds out are held out
                                              (`held_out_files`: every HELD_OUT_EVERY-th of a class folder's
                                              files), the rest (and the images directly in DIR) calibrate
        DIR/train/<class>/ + DIR/val/<class>/ (or test/): train/ calibrates, val/ is held out

    Held-out images carry labels when every class folder is named as one of
    `class_names` (the bundle's), so the precision check can also report top-1.

    Raises:
        InputError: the folder is missing, holds no image, or a file cannot be decoded.
    """
    folder = Path(folder)
    calibration_files, held_out_by_class = _split_files(folder, "--calibration-dir")
    if not calibration_files:
        raise InputError(
            f"--calibration-dir {folder} holds no image to calibrate on ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    calibration = ImageSet(_read(folder, sorted(calibration_files)), f"folder {folder}")
    pairs = [(path, name) for name, files in held_out_by_class.items() for path in files]
    if not pairs:
        return calibration, None
    return calibration, _labelled(folder, pairs, class_names, f"the held-out images of folder {folder}")


def check_images(folder: Path | None, class_names: Sequence[str], count: int) -> ImageSet:
    """The images of a bundle's check set (`anchor_edge.bundle.check_set`): what `verify` reruns on the device.

    From the user's labelled folder (`folder_split`'s layouts): `count` of its
    held-out images, one class after another in turn, so that every class is
    checked. Without a folder: the first `count` of the default held-out split
    (digits test images for a digits bundle, else the bundled photos).

    A held-out file that does not decode is left out with a warning, as
    training leaves it out (`export.data.folder`): a bundle is never lost
    at the end of a run for one bad image.

    Raises:
        InputError: the folder is missing or has no readable held-out images (no class subfolders, no val/ or
            test/).
    """
    if folder is None:
        held_out = default_split(class_names)[1]
        return ImageSet(held_out.images[:count], f"the first {count} of {held_out.source}")
    folder = Path(folder)
    held_out_by_class = _split_files(folder, "--check-dir")[1]
    queues = [[(path, name) for path in files] for name, files in held_out_by_class.items()]
    chosen: list[tuple[Path, str, np.ndarray]] = []
    for path, name in (pair for turn in itertools.zip_longest(*queues) for pair in turn if pair is not None):
        if len(chosen) == count:
            break
        try:
            chosen.append((path, name, load_image(path)))
        except InputError as error:
            log.warning("check set: %s left out (%s)", path, error)
    if not chosen:
        raise InputError(
            f"--check-dir {folder} has no readable held-out images: give it class subfolders (every "
            f"{HELD_OUT_EVERY}th file of each is held out) or train/ and val/ (or test/) splits"
        )
    return ImageSet(
        [(str(path.relative_to(folder)), image) for path, _, image in chosen],
        f"{len(chosen)} held-out images of folder {folder}, classes in turn",
        _labels([name for _, name, _ in chosen], class_names),
    )


def _split_files(folder: Path, flag: str) -> tuple[list[Path], dict[str, list[Path]]]:
    """The folder's calibration files and {class name: held-out files}, by `folder_split`'s layouts, unread."""
    if not folder.is_dir():
        raise InputError(f"{flag} {folder} is not a directory")
    refuse_half_split(folder, flag)
    held_out_folder = held_out_split(folder)
    if held_out_folder != folder:
        train = _class_files(folder / "train")
        calibration_files = [path for files in train.values() for path in files] + images_in(
            folder / "train", recursive=False
        )
        return calibration_files, _class_files(held_out_folder)
    calibration_files, held_out = images_in(folder, recursive=False), {}
    for name, files in _class_files(folder).items():
        trained_apart = set(held_out_files(folder / name))  # what training held out: a check never sees trained files
        calibration_files += [p for p in files if p not in trained_apart]
        held_out[name] = [p for p in files if p in trained_apart]
    return calibration_files, held_out


def _labelled(folder: Path, pairs: Sequence[tuple[Path, str]], class_names: Sequence[str], source: str) -> ImageSet:
    """(file, class folder) pairs read as an ImageSet, labelled where every class folder is one of `class_names`."""
    return ImageSet(
        _read(folder, [path for path, _ in pairs]), source, _labels([name for _, name in pairs], class_names)
    )


def _labels(folders: Sequence[str], class_names: Sequence[str]) -> list[int] | None:
    """Each class folder's index in `class_names`; None unless every one is named there."""
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in folders] if all(name in index for name in folders) else None


def held_out_images(folder: Path | None, class_names: Sequence[str]) -> ImageSet:
    """The precision check's images: the user's folder's held-out set where it has one, else the default split's."""
    held_out = folder_split(folder, class_names)[1] if folder is not None else None
    return held_out if held_out is not None else default_split(class_names)[1]


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class folder name: its image files, recursively, by path} for the subfolders of `folder`."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {c.name: class_files(c) for c in classes}


def _read(folder: Path, files: Sequence[Path]) -> list[Photo]:
    images = []
    for path in files:
        try:
            images.append((str(path.relative_to(folder)), load_image(path)))
        except InputError as error:
            raise InputError(f"calibration image {path} cannot be read ({error}); remove it or fix it") from error
    return images


def calibration_images(folder: Path | None, class_names: Sequence[str] = ()) -> ImageSet:
    """The user's folder, else the default calibration split; logs the count, warns when few."""
    chosen = folder_images(folder) if folder is not None else default_split(class_names)[0]
    log.info("INT8 calibration: %d images (%s)", len(chosen.images), chosen.source)
    if len(chosen.images) < MIN_CALIBRATION_IMAGES:
        log.warning(
            "INT8 calibration uses only %d images (fewer than %d): activation ranges may not cover real inputs; "
            "point --calibration-dir at more images like those the bundle will see",
            len(chosen.images),
            MIN_CALIBRATION_IMAGES,
        )
    return chosen


def anchornet_inputs(pipeline: Pipeline, images: Sequence[Photo], batch: int = 8) -> list[np.ndarray]:
    """AnchorNet's calibration batches: the images preprocessed and normalized as the Pipeline does."""
    crops, _ = pipeline.preprocess(image for _, image in images)
    entry = pipeline.bundle.anchornet
    return [normalize(crops[s : s + batch], entry.mean, entry.std) for s in range(0, len(crops), batch)]


def localized_patches(pipeline: Pipeline, images: Sequence[Photo], batch: int = 8) -> dict[int, np.ndarray]:
    """The downstream inputs the FP32 `pipeline` produces on `images`: {size: (n, 3, size, size)}.

    Each image goes through the Pipeline's own stages (preprocess, localize,
    then `anchor_edge.method.patches`), and LSP runs on the decided class's heatmap of
    *every* branch, not only the chosen one: every patch size is then
    calibrated even when one branch wins all images (as with an untrained
    AnchorNet). Patches are cut at native size from the downstream-normalized
    network input; the whole crop is the 224 entry.
    """
    entry = pipeline.bundle.downstream
    patches: dict[int, list[np.ndarray]] = {}
    for start in range(0, len(images), batch):
        crops, _ = pipeline.preprocess(image for _, image in images[start : start + batch])
        anchor = pipeline.localize(crops)
        located = locate(
            anchor,
            pipeline.bundle.branches,
            pipeline.lsp,
            pipeline.vote_min,
            branch_rule=pipeline.branch_rule,
            heatmap=pipeline.heatmap,
            every_branch=True,
        )
        inputs = normalize(crops, entry.mean, entry.std)
        for size, (_, group) in cut_by_size(inputs, [image.boxes for image in located]).items():
            patches.setdefault(size, []).extend(group)
        patches.setdefault(pipeline.bundle.crop, []).extend(inputs)
    return {size: _evenly_spaced(np.stack(found), MAX_PATCHES_PER_SIZE) for size, found in sorted(patches.items())}


def _evenly_spaced(items: np.ndarray, limit: int) -> np.ndarray:
    if len(items) <= limit:
        return items
    return items[np.linspace(0, len(items) - 1, limit).round().astype(int)]


class BatchReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over prepared batches of the model's one input."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self.batches = list(batches)
        self._iterator: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iterator, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self._iterator = iter(self.batches)


def patch_batches(patches: dict[int, np.ndarray], batch: int = 16) -> list[np.ndarray]:
    """Split each size's patches into batches (one size per batch, as the Pipeline runs them)."""
    return [group[s : s + batch] for group in patches.values() for s in range(0, len(group), batch)]
