"""The contrast curriculum and the training backgrounds: deterministic, and never in the test split."""

import numpy as np
import pytest

from export.data.digits import make_sample, network_input
from export.training.common import easy_share, is_easy, sample_batch


def test_the_easy_share_is_one_for_the_first_five_percent_and_none_after_fifteen():
    assert [easy_share(p) for p in (0.0, 0.049, 0.05, 0.10, 0.15, 0.5, 1.0)] == pytest.approx([1, 1, 1, 0.5, 0, 0, 0])


def test_which_samples_are_easy_is_a_pure_function_of_index_seed_and_share():
    draws = [is_easy(i, 0, 0.5) for i in range(400)]
    assert draws == [is_easy(i, 0, 0.5) for i in range(400)]
    assert 160 < sum(draws) < 240  # about half
    assert draws != [is_easy(i, 1, 0.5) for i in range(400)]
    assert not any(is_easy(i, 0, 0.0) for i in range(400)) and all(is_easy(i, 0, 1.0) for i in range(400))
    # a larger share only adds easy samples: the same uniform draw is compared with it
    assert all(is_easy(i, 0, 0.8) for i in range(400) if draws[i])


def test_an_easy_sample_is_the_same_digit_in_white_on_the_photo_darkened_to_a_third():
    hard, easy = make_sample("train", 23, seed=2), make_sample("train", 23, seed=2, easy=True)
    assert (easy.box, easy.label, easy.digit_index, easy.photo) == (hard.box, hard.label, hard.digit_index, hard.photo)
    assert np.array_equal(easy.mask, hard.mask)
    # Outside the ink, every pixel is the hard sample's background // 3 (the ink is pasted after darkening).
    outside = ~easy.mask
    assert np.array_equal(easy.image[outside], hard.image[outside] // 3)
    # The ink blends the darkened background toward white: near white where it is solid, and far above the background.
    ink = easy.image[easy.mask].astype(int)
    assert ink.max() >= 240 and ink.min(axis=1).mean() > easy.image[outside].mean() + 100


def test_the_test_split_has_no_easy_samples():
    with pytest.raises(ValueError, match="train"):
        make_sample("test", 0, easy=True)
    with pytest.raises(ValueError, match="train"):
        sample_batch("test", range(4), seed=0, easy_share=1.0)


def test_training_backgrounds_are_augmented_and_test_backgrounds_are_not():
    # A test sample's background is a crop of its photo: its colours stay within the photo's own.
    from export.data.digits import photos

    test_photos = dict(photos("test"))
    for index in range(6):
        sample = make_sample("test", index)
        photo = test_photos[sample.photo]
        background = sample.image[~sample.mask]
        assert background.min() >= photo.min() and background.max() <= photo.max()
    # Training samples vary in colour: per-channel means differ from the photo's grey balance.
    spreads = [np.ptp(network_input(make_sample("train", i).image).reshape(-1, 3).mean(0)) for i in range(30)]
    assert max(spreads) > 20


def test_round_clutter_is_deterministic_and_covers_one_to_max_clutter_ellipses():
    from export.data.digits import IMAGE_SIZE, MAX_CLUTTER, _with_round_clutter

    grey = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 128.0, np.float32)
    first = _with_round_clutter(grey, np.random.default_rng(7))
    again = _with_round_clutter(grey, np.random.default_rng(7))
    assert np.array_equal(first, again)
    assert np.all(grey == 128.0), "the input is not changed in place"
    changed = np.any(first != 128.0, axis=2)
    # At least one ellipse of semi-axes >= 8 px (pi * 8 * 8, less its clipped part), at most MAX_CLUTTER of <= 55 px.
    assert 50 <= changed.sum() <= MAX_CLUTTER * np.pi * 56 * 56


def test_real_crops_are_deterministic_and_cover_one_to_max_crops_disks():
    from export.data.digits import IMAGE_SIZE, MAX_CROPS, _with_real_crops

    grey = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 128.0, np.float32)
    first = _with_real_crops(grey, np.random.default_rng(3))
    assert np.array_equal(first, _with_real_crops(grey, np.random.default_rng(3)))
    assert np.all(grey == 128.0), "the input is not changed in place"
    changed = np.any(first != 128.0, axis=2)
    # The last crop pasted lies on top: a whole disk of diameter >= 20 px (pi * 10 * 10, less the rasterised rim);
    # at most MAX_CROPS squares of 80 px.
    assert 250 <= changed.sum() <= MAX_CROPS * 80 * 80
