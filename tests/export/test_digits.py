"""The digits benchmark generator: deterministic, honest boxes, disjoint splits, balanced classes."""

from collections import Counter

import cv2
import numpy as np
import pytest

from anchor_edge.method.preprocess import resize_and_crop
from export.data.digits import (
    DIGIT_SIDES,
    NETWORK_OFFSET,
    TEST_PHOTOS,
    _digits,
    digit_indices,
    make_sample,
    network_input,
    photos,
)
from export.data.photos import SKIMAGE_EXTRA


def test_same_arguments_give_identical_bytes_and_other_seeds_differ():
    first, again = make_sample("train", 17, seed=3), make_sample("train", 17, seed=3)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.box == again.box
    assert make_sample("train", 17, seed=4).image.tobytes() != first.image.tobytes()
    assert make_sample("train", 18, seed=3).image.tobytes() != first.image.tobytes()


def test_runtime_preprocessing_maps_an_image_to_its_network_input():
    # The boxes are recorded in network-input coordinates only because the
    # runtime's resize (256 -> 256) and centre crop are exactly this slice.
    sample = make_sample("test", 5)
    rgb, transform = resize_and_crop(sample.image)
    assert np.array_equal(rgb, network_input(sample.image)[:, :, ::-1])
    assert (transform.scale, transform.offset_x, transform.offset_y) == (1.0, NETWORK_OFFSET, NETWORK_OFFSET)


@pytest.mark.parametrize("index", range(0, 60, 7))
def test_box_is_where_the_ink_was_painted(index, monkeypatch):
    # Paint the digit in white on black: then the painted pixels are exactly the ink, and the recorded box
    # (network-input coordinates, offset 16) must be their tight box.
    from export.data import digits

    monkeypatch.setattr(digits, "random_background", lambda photo, rng: np.zeros((256, 256, 3), np.uint8))
    monkeypatch.setattr(digits, "_contrasting_colour", lambda region, rng: np.full(3, 255.0, np.float32))
    sample = make_sample("test", index)
    ys, xs = np.nonzero(sample.image.max(axis=2))
    x0, y0, x1, y1 = sample.box
    assert (xs.min() - 16, ys.min() - 16, xs.max() + 1 - 16, ys.max() + 1 - 16) == (x0, y0, x1, y1)
    assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224


@pytest.mark.parametrize("index", range(0, 60, 7))
def test_the_ink_is_visible_on_its_photo(index):
    # inside the mask the image departs from its own surroundings
    sample = make_sample("train", index)
    ring = cv2.dilate(sample.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~sample.mask
    inked = sample.image[sample.mask].astype(float).mean(0)
    assert np.abs(inked - sample.image[ring].astype(float).mean(0)).max() > 25


@pytest.mark.parametrize("index", range(0, 90, 11))
def test_box_follows_the_mnist_digit_and_its_scale(index):
    sample = make_sample("test", index)
    pixels, labels = _digits()
    assert labels[sample.digit_index] == sample.label
    ys, xs = np.nonzero(pixels[sample.digit_index] > 0)
    ink_aspect = (ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1)
    width, height = sample.box[2] - sample.box[0], sample.box[3] - sample.box[1]
    assert height / width == pytest.approx(ink_aspect, rel=0.25)
    low, high = DIGIT_SIDES[sample.scale]
    assert low - 3 <= max(width, height) <= high  # faint rim pixels may drop below the ink threshold


def test_digit_split_is_per_class_disjoint_and_complete():
    _, labels = _digits()
    train, test = digit_indices("train"), digit_indices("test")
    for digit in range(10):
        assert len(train[digit]) == 400 and len(test[digit]) == 100
        assert set(labels[train[digit]]) == {digit} == set(labels[test[digit]])
        assert not set(train[digit]) & set(test[digit])
    assert len(set(np.concatenate(train)) | set(np.concatenate(test))) == 5000


def test_photo_split_is_disjoint_and_samples_stay_in_their_split():
    train_names = {name for name, _ in photos("train")}
    test_names = {name for name, _ in photos("test")}
    assert test_names == set(TEST_PHOTOS) and not train_names & test_names and len(train_names) >= 10
    assert set(SKIMAGE_EXTRA) <= train_names, "the extra photos are training backgrounds"
    test_digits = set(np.concatenate(digit_indices("test")))
    for index in range(40):
        sample = make_sample("test", index)
        assert sample.photo in test_names and sample.digit_index in test_digits
        assert make_sample("train", index).photo in train_names


def test_any_thirty_consecutive_samples_are_balanced():
    samples = [make_sample("train", index) for index in range(40, 70)]
    assert Counter(s.label for s in samples) == {digit: 3 for digit in range(10)}
    assert Counter(s.scale for s in samples) == {0: 10, 1: 10, 2: 10}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split"):
        make_sample("val", 0)
    with pytest.raises(ValueError, match="index"):
        make_sample("train", -1)
    with pytest.raises(ValueError, match="256"):
        network_input(np.zeros((224, 224, 3), np.uint8))
