"""Random erasing away from the object (export.training.distractors): never on the object, bounded, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from export.training.common import CENTRE_MARGIN
from export.training.distractors import AREA_SHARE, MAX_RECTANGLES, with_distractors


def test_the_square_around_the_centre_is_never_touched_and_the_rest_sometimes_is():
    rng = np.random.default_rng(0)
    changed_images = 0
    for index in range(200):
        image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        x, y = rng.uniform(0, 224, size=2)
        out = with_distractors(image, (x, y), seed=0, index=index)
        # Pixel (c, r) spans [c, c + 1): within CENTRE_MARGIN of (x, y) means overlapping (x - 32, x + 32).
        cols = slice(max(0, int(np.floor(x - CENTRE_MARGIN)) + 1), int(np.ceil(x + CENTRE_MARGIN)) - 1)
        rows = slice(max(0, int(np.floor(y - CENTRE_MARGIN)) + 1), int(np.ceil(y + CENTRE_MARGIN)) - 1)
        assert np.array_equal(out[rows, cols], image[rows, cols])
        changed = (out != image).any(axis=2)
        assert changed.mean() <= MAX_RECTANGLES * AREA_SHARE[1] + 1e-9
        changed_images += bool(changed.any())
    # 0 to 3 rectangles, uniformly: about three images in four get at least one.
    assert 120 <= changed_images <= 180


def test_a_rectangle_is_one_flat_colour_or_noise():
    grey = np.full((224, 224, 3), 128, np.uint8)
    flat = noisy = 0
    for index in range(100):
        out = with_distractors(grey, (112.0, 112.0), seed=1, index=index)
        changed = (out != grey).any(axis=2)
        if not changed.any():
            continue
        ys, xs = np.nonzero(changed)
        colours = {tuple(pixel) for pixel in out[ys, xs]}
        flat += len(colours) <= MAX_RECTANGLES
        noisy += len(colours) > 100
    assert flat > 10 and noisy > 10


def test_the_same_arguments_give_the_same_pixels_and_the_input_is_left_as_it_was():
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    before = image.copy()
    first = with_distractors(image, (50.0, 60.0), seed=3, index=11)
    assert np.array_equal(first, with_distractors(image, (50.0, 60.0), seed=3, index=11))
    assert np.array_equal(image, before)
    others = [with_distractors(image, (50.0, 60.0), seed=3, index=i) for i in range(12, 20)]
    assert any(not np.array_equal(first, other) for other in others)


@pytest.mark.parametrize("centre", [(0.0, 0.0), (223.9, 223.9)])
def test_a_centre_at_the_border_still_leaves_room(centre):
    image = np.zeros((224, 224, 3), np.uint8)
    outs = [with_distractors(image, centre, seed=0, index=i) for i in range(40)]
    assert any(out.any() for out in outs)
