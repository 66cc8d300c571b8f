"""INT8 calibration reads the user's folder as `anchor-edge eval` and training do: flat, class subfolders,
or train/val."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
from anchor_edge.errors import InputError  # noqa: E402
from export.precision.calibration import calibration_images, check_images, folder_split, held_out_images  # noqa: E402


def write(path: Path, value: int) -> None:
    """A 32 x 48 image filled with `value`, so each file can be told apart after reading."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((32, 48, 3), value, np.uint8))


def values(images) -> dict[str, int]:
    return {name: int(image[0, 0, 0]) for name, image in images}


def test_class_subfolders_calibrate_and_every_fifth_file_of_a_class_is_held_out_with_its_label(tmp_path):
    for j in range(6):
        write(tmp_path / "cat" / f"{j}.png", 10 + j)
    write(tmp_path / "dog" / "deep" / "a.png", 50)
    write(tmp_path / "loose.png", 60)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    calibration, held_out = folder_split(tmp_path, ["dog", "cat"])
    assert values(calibration.images) == {
        **{f"cat/{j}.png": 10 + j for j in (0, 1, 2, 3, 5)},
        "dog/deep/a.png": 50,
        "loose.png": 60,
    }
    assert values(held_out.images) == {"cat/4.png": 14} and held_out.labels == [1]
    assert folder_split(tmp_path, ["wolf"])[1].labels is None, "folders that are not the bundle's classes: no labels"


@pytest.mark.parametrize("split", ["val", "test"])
def test_train_calibrates_and_the_held_out_split_checks(tmp_path, split):
    write(tmp_path / "train" / "dog" / "t.png", 1)
    write(tmp_path / "train" / "cat" / "t.png", 2)
    write(tmp_path / split / "dog" / "v.png", 3)
    calibration, held_out = folder_split(tmp_path, ["cat", "dog"])
    assert values(calibration.images) == {"train/cat/t.png": 2, "train/dog/t.png": 1}
    assert values(held_out.images) == {f"{split}/dog/v.png": 3} and held_out.labels == [1]
    assert values(held_out_images(tmp_path, ["cat", "dog"]).images) == values(held_out.images)


def test_a_flat_folder_calibrates_on_all_and_has_no_held_out_set(tmp_path, caplog):
    for j in range(3):
        write(tmp_path / f"{j}.png", j)
    calibration, held_out = folder_split(tmp_path)
    assert values(calibration.images) == {"0.png": 0, "1.png": 1, "2.png": 2} and held_out is None
    with caplog.at_level("INFO", logger="anchor_edge"):
        assert len(calibration_images(tmp_path).images) == 3


def test_an_unreadable_or_missing_image_is_an_error_naming_it(tmp_path):
    with pytest.raises(InputError, match="is not a directory"):
        folder_split(tmp_path / "missing")
    write(tmp_path / "cat" / "a.png", 1)
    (tmp_path / "cat" / "b.png").write_bytes(b"broken")
    with pytest.raises(InputError, match=r"calibration image .*b\.png cannot be read"):
        folder_split(tmp_path)
    (tmp_path / "cat" / "a.png").unlink()
    (tmp_path / "cat" / "b.png").unlink()
    with pytest.raises(InputError, match="holds no image to calibrate on"):
        folder_split(tmp_path)


def test_the_precision_gate_checks_on_the_calibration_folders_held_out_images_with_their_labels(small_bundle, tmp_path):
    import shutil

    from anchor_edge.bundle.schema import read_manifest
    from export.precision.convert import PrecisionOptions, convert_bundle
    from export.precision.flag import parse_precision

    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    names = read_manifest(bundle).class_names[:2]
    for label, name in enumerate(names):  # five files per class: the fifth of each is held out (two in all)
        for j in range(5):
            write(tmp_path / "folder" / name / f"{j}.png", 40 * label + 10 * j)
    options = PrecisionOptions(models=parse_precision("fp16"), calibration_dir=tmp_path / "folder", min_agreement=0.0)
    report = convert_bundle(bundle, options)
    assert report.images == 2, "the gate ran on the folder's two held-out images, not on the default split"
    assert report.held_out_source == f"the held-out images of folder {tmp_path / 'folder'}"
    assert report.top1_accuracy is not None, "their class folders are the bundle's classes, so the gate scores top-1"


def test_the_check_set_takes_held_out_files_only_one_class_after_another(tmp_path):
    for j in range(15):  # held out: cat/04, cat/09, cat/14
        write(tmp_path / "cat" / f"{j:02d}.png", j)
    for j in range(5):  # held out: dog/4
        write(tmp_path / "dog" / f"{j}.png", 100 + j)
    checked = check_images(tmp_path, ["cat", "dog"], 3)
    assert [name for name, _ in checked.images] == ["cat/04.png", "dog/4.png", "cat/09.png"]
    assert values(checked.images) == {"cat/04.png": 4, "dog/4.png": 104, "cat/09.png": 9} and checked.labels == [
        0,
        1,
        0,
    ]
    assert str(tmp_path) in checked.source
    assert len(check_images(tmp_path, ["cat", "dog"], 16).images) == 4, "no more than the folder holds out"


def test_a_held_out_file_that_does_not_decode_is_left_out_of_the_check_set_as_training_leaves_it_out(tmp_path, caplog):
    for j in range(10):  # held out: cat/04 (broken) and cat/09
        write(tmp_path / "cat" / f"{j:02d}.png", j)
    for j in range(5):  # held out: dog/4
        write(tmp_path / "dog" / f"{j}.png", 100 + j)
    (tmp_path / "cat" / "04.png").write_bytes(b"not an image")
    checked = check_images(tmp_path, ["cat", "dog"], 2)
    assert values(checked.images) == {"dog/4.png": 104, "cat/09.png": 9} and checked.labels == [1, 0]
    assert "cat/04.png left out" in caplog.text


def test_a_class_folders_subfolder_holds_files_of_its_class_for_training_and_the_check_alike(tmp_path):
    from export.data.folder import ImageFolder
    from export.data.source import HELD_OUT, TRAIN

    for name in ("cat", "dog"):
        for j in range(5):  # dog's fifth file by path is dog/4.png
            write(tmp_path / name / f"{j}.png", 10 * j + (name == "dog"))
    write(tmp_path / "cat" / "0-extra" / "a.png", 200)  # by path cat's files are 0-extra/a.png, 0.png, ..., 4.png
    trained_on = ImageFolder.open(tmp_path)
    trained_apart = {path.relative_to(tmp_path).as_posix() for path, _ in trained_on.files[HELD_OUT]}
    assert trained_apart == {"cat/3.png", "dog/4.png"}
    assert (tmp_path / "cat" / "0-extra" / "a.png", 0) in trained_on.files[TRAIN]
    assert {name for name, _ in check_images(tmp_path, ["cat", "dog"], 16).images} == trained_apart
    calibration, held_out = folder_split(tmp_path, ["cat", "dog"])
    assert {name for name, _ in held_out.images} == trained_apart
    assert "cat/0-extra/a.png" in values(calibration.images) and "cat/4.png" in values(calibration.images)


def test_a_check_folder_without_held_out_images_is_an_error_and_none_takes_the_default_split(tmp_path):
    write(tmp_path / "a.png", 1)
    with pytest.raises(InputError, match="--check-dir .* has no readable held-out images"):
        check_images(tmp_path, ["cat"], 4)
    with pytest.raises(InputError, match="--check-dir .* is not a directory"):
        check_images(tmp_path / "missing", ["cat"], 4)
    digits = check_images(None, [str(d) for d in range(10)], 4)
    assert len(digits.images) == 4 and "digits benchmark's test split" in digits.source


def test_a_bundle_exported_with_a_check_folder_carries_its_held_out_images(small_models, tmp_path):
    from anchor_edge.bundle.check_set import verify_bundle
    from anchor_edge.bundle.schema import read_manifest
    from export.bundle.build import export_bundle

    _, anchornet_ckpt, downstream_ckpt = small_models
    for label in range(3):  # five files per class: the fifth of each is held out
        for j in range(5):
            write(tmp_path / "folder" / str(label) / f"{j}.png", 40 * label + 10 * j)
    bundle = export_bundle(
        anchornet_ckpt, f"resnet18:{downstream_ckpt}", tmp_path / "bundle", check_dir=tmp_path / "folder"
    )
    check_set = read_manifest(bundle).check_set
    assert (
        check_set.images == 3
        and check_set.source == f"3 held-out images of folder {tmp_path / 'folder'}, classes in turn"
    )
    squares = np.load(bundle / check_set.file)["squares"]
    assert [int(square[0, 0, 2]) for square in squares] == [40, 80, 120], "each class's fifth file, red channel of RGB"
    assert verify_bundle(bundle, record=False).passed
