"""Which files `anchor-edge eval` reads from a folder, with which labels, and which it refuses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor_edge.errors import InputError
from anchor_edge.evaluation.folder import read_labelled_folder
from export.data.folder import ImageFolder
from export.data.source import HELD_OUT, TRAIN

CLASSES = ("cat", "dog", "fox")


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_class_folders_in_the_bundles_order_recursively_and_loose_images_listed(tmp_path):
    touch(tmp_path / "fox" / "b.png", tmp_path / "fox" / "a.JPG", tmp_path / "cat" / "deep" / "c.png")
    touch(tmp_path / "cat" / "notes.txt", tmp_path / "cat" / ".hidden.png", tmp_path / "loose.jpg")
    folder = read_labelled_folder(tmp_path, CLASSES)
    assert folder.split == tmp_path
    assert folder.files == (
        (tmp_path / "cat" / "deep" / "c.png", 0),
        (tmp_path / "fox" / "a.JPG", 2),
        (tmp_path / "fox" / "b.png", 2),
    )
    assert folder.unlabelled == (tmp_path / "loose.jpg",)


@pytest.mark.parametrize("held_out", ["val", "test"])
def test_train_and_val_splits_evaluate_the_held_out_one(tmp_path, held_out):
    touch(tmp_path / "train" / "dog" / "t.png", tmp_path / held_out / "dog" / "v.png")
    folder = read_labelled_folder(tmp_path, CLASSES)
    assert folder.split == tmp_path / held_out and folder.files == ((tmp_path / held_out / "dog" / "v.png", 1),)


def test_refusals_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        read_labelled_folder(tmp_path / "missing", CLASSES)
    touch(tmp_path / "a.png")
    with pytest.raises(InputError, match="has 1 image\\(s\\) but no class subfolders, so no labels"):
        read_labelled_folder(tmp_path, CLASSES)
    touch(tmp_path / "wolf" / "w.png", tmp_path / "cat" / "c.png")
    with pytest.raises(
        InputError, match=r"unknown class folder\(s\) \['wolf'\]: the bundle's classes are 'cat', 'dog'"
    ):
        read_labelled_folder(tmp_path, CLASSES)
    (tmp_path / "wolf" / "w.png").unlink()
    (tmp_path / "wolf").rmdir()
    (tmp_path / "cat" / "c.png").unlink()
    with pytest.raises(InputError, match="the class folders hold no image"):
        read_labelled_folder(tmp_path, CLASSES)


def test_held_out_reads_exactly_the_files_a_training_run_on_the_folder_holds_out(tmp_path):
    for c, name in enumerate(CLASSES):
        (tmp_path / name).mkdir()
        for j in range(7):  # 7 files: file 4 of each class is held out (every 5th, by path)
            cv2.imwrite(str(tmp_path / name / f"{j:02d}.png"), np.full((40, 48, 3), 30 * j + c, np.uint8))
    nested = tmp_path / "cat" / "00" / "a.png"  # a subfolder's image is one of its class, to training as to eval
    nested.parent.mkdir()
    cv2.imwrite(str(nested), np.full((40, 48, 3), 200, np.uint8))
    trained_on = ImageFolder.open(tmp_path)
    folder = read_labelled_folder(tmp_path, CLASSES, held_out_only=True)
    assert folder.files == tuple(trained_on.files[HELD_OUT])
    # by path, cat's files are 00/a.png, 00.png, 01.png, 02.png, 03.png, ...: its 5th is 03.png
    cat, dog, fox = (tmp_path / name for name in CLASSES)
    assert folder.files == ((cat / "03.png", 0), (dog / "04.png", 1), (fox / "04.png", 2))
    assert (nested, 0) in trained_on.files[TRAIN]
    assert len(read_labelled_folder(tmp_path, CLASSES).files) == 3 * 7 + 1


def test_half_a_split_layout_is_refused_and_a_class_called_test_stays_a_class(tmp_path):
    touch(tmp_path / "split" / "train" / "dog" / "t.png")
    for read in (lambda root: read_labelled_folder(root, CLASSES), ImageFolder.open):
        with pytest.raises(InputError, match=r"has train/ and no more: a split layout needs both train/ and val/"):
            read(tmp_path / "split")
    touch(tmp_path / "classes" / "test" / "a.png", tmp_path / "classes" / "dog" / "b.png")
    folder = read_labelled_folder(tmp_path / "classes", ("dog", "test"))
    assert folder.files == ((tmp_path / "classes" / "dog" / "b.png", 0), (tmp_path / "classes" / "test" / "a.png", 1))


def test_held_out_on_a_folder_with_splits_is_refused(tmp_path):
    touch(tmp_path / "train" / "dog" / "t.png", tmp_path / "val" / "dog" / "v.png")
    with pytest.raises(InputError, match="--held-out is for a folder without splits"):
        read_labelled_folder(tmp_path, CLASSES, held_out_only=True)
