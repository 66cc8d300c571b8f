"""A user's labelled images for evaluation: one subfolder per class, named as the bundle's classes.

Layouts (files with an image suffix are taken, found recursively inside each
class folder, by path; hidden files and folders are ignored):

    DIR/<class>/*.jpg                                   every image is evaluated; with held_out_only, only the
                                                        files `python -m export.train --data DIR` held out
    DIR/train/<class>/... + DIR/val/<class>/...         (or test/ instead of val/): only the held-out split

A class folder must be named as one of the bundle's classes (bundle.class_names);
one that is not is an error naming it. A folder with images and no class
subfolders has no labels, which is an error too. Image files outside any
class folder are listed as skipped, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anchor_edge.errors import InputError
from anchor_edge.video.sources import IMAGE_SUFFIXES

#: The held-out split folders looked for next to train/, in this order.
HELD_OUT_FOLDERS = ("val", "test")
#: In a folder without splits `python -m export.train --data` holds out file j of each class (the class folder's
#: image files, its subfolders' included, by path) when j % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 and trains on the
#: others.
HELD_OUT_EVERY = 5
#: How many known class names an "unknown class" error lists.
NAMES_SHOWN = 5


@dataclass(frozen=True)
class LabelledFolder:
    """The labelled image files of a folder, and the image files that carry no label.

    Attributes:
        root: the folder the user named.
        split: the folder read: root itself, or its val/ (test/) split when root has train/ and val/.
        files: (path, class id) per image, class folders in the bundle's class order, files by path.
        unlabelled: image files directly in `split`, outside any class folder (skipped, reported).
    """

    root: Path
    split: Path
    files: tuple[tuple[Path, int], ...]
    unlabelled: tuple[Path, ...] = ()


def read_labelled_folder(
    root: str | Path, class_names: Sequence[str], *, held_out_only: bool = False
) -> LabelledFolder:
    """Find the labelled images under `root` for a bundle with `class_names`.

    held_out_only: for a folder without splits, only the files a training run on it held out (`held_out_files`),
        so a bundle trained on the folder is scored on images it did not learn.

    Raises:
        InputError: no such folder; no class subfolders (no labels); a class folder not among
            `class_names` (unknown class); no image at all in the class folders; held_out_only on a
            folder with train/ and val/ splits (its val/ is read anyway).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root} is not a folder; give one subfolder of images per class")
    refuse_half_split(root)
    split = held_out_split(root)
    if held_out_only and split != root:
        raise InputError(
            f"--held-out is for a folder without splits: {root} has train/ and {split.name}/, and only "
            f"{split.name}/ is evaluated anyway; drop --held-out"
        )
    folders = sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = tuple(images_in(split, recursive=False))
    if not folders:
        found = f"{len(loose)} image(s) but " if loose else ""
        raise InputError(
            f"--data {split} has {found}no class subfolders, so no labels; put each image in a subfolder named "
            f"after its class (e.g. {split / class_names[0]}/)"
        )
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [p.name for p in folders if p.name not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in class_names[:NAMES_SHOWN])
        more = f" and {len(class_names) - NAMES_SHOWN} more" if len(class_names) > NAMES_SHOWN else ""
        raise InputError(
            f"--data {split}: unknown class folder(s) {unknown[:NAMES_SHOWN]}: the bundle's classes are "
            f"{shown}{more}; rename or remove the folder (bundle.json's class_names lists them all)"
        )
    by_class = sorted(folders, key=lambda p: index[p.name])
    listed = held_out_files if held_out_only else class_files
    files = tuple((path, index[folder.name]) for folder in by_class for path in listed(folder))
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"--data {split}: the class folders hold no image ({suffixes})")
    return LabelledFolder(root, split, files, loose)


def held_out_split(root: Path) -> Path:
    """root/val (or root/test) when root has train/ and one of them, else root itself."""
    held_out = next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir()), None)
    return held_out if held_out is not None and (root / "train").is_dir() else root


def refuse_half_split(root: Path, flag: str = "--data") -> None:
    """Raise InputError for half a split layout (train/ alone, or val/ alone) rather than read `train` as a class.

    Only when every subfolder of root is a split's name: a class may be called "test" beside others.
    """
    subfolders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if subfolders and subfolders <= {"train", *HELD_OUT_FOLDERS} and held_out_split(root) == root:
        found = ", ".join(f"{name}/" for name in sorted(subfolders))
        raise InputError(
            f"{flag} {root} has {found} and no more: a split layout needs both train/ and val/ (or test/), each "
            f"with one subfolder per class; or give one split itself ({flag} {root / sorted(subfolders)[0]})"
        )


def class_files(folder: Path) -> list[Path]:
    """A class folder's image files, its subfolders' included, by path: what training reads and the hold-out rule
    counts, as evaluation does."""
    return images_in(folder, recursive=True)


def held_out_files(folder: Path) -> list[Path]:
    """The files of a class folder that a training run on a folder without splits holds out (`HELD_OUT_EVERY`)."""
    return [path for j, path in enumerate(class_files(folder)) if j % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]


def images_in(folder: Path, *, recursive: bool) -> list[Path]:
    """The image files of `folder` (of its subfolders too when `recursive`), hidden names ignored, by path."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
