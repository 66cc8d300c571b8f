"""Which images a latency benchmark times: the images the bundle's accuracy is measured on, where there are any.

The patch pipeline's cost depends on the images (how many patches LSP takes,
on which branch), so a bundle's latency must be measured on the images its
accuracy is measured on: for a digits bundle (classes "0".."9") the digits
benchmark's test images, not photos that hold no digit. Photos (scikit-image's
and scikit-learn's, `export.data.photos`) or a folder of the user's stay a
flag away.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from anchor_edge.video.sources import IMAGE_SUFFIXES

DIGITS, PHOTOS = "digits", "photos"
#: Digits test images timed (seed 0, the accuracy benchmark's first ones): enough rounds see every branch.
DIGITS_IMAGES = 64
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))


def default_images(class_names: tuple[str, ...] | list[str]) -> str:
    """DIGITS for a bundle trained on the digits benchmark, else PHOTOS."""
    return DIGITS if tuple(class_names) == DIGIT_CLASSES else PHOTOS


def load_images(spec: str) -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8) images: DIGITS, PHOTOS, or every readable image file in the folder `spec`."""
    if spec == DIGITS:
        from export.data.digits import make_sample

        return [(f"digits test {index}", make_sample("test", index, 0).image) for index in range(DIGITS_IMAGES)]
    if spec == PHOTOS:
        from export.data.photos import real_photos

        return real_photos()
    folder = Path(spec)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    images = [(p.name, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in files]
    unreadable = [name for name, image in images if image is None]
    if unreadable:  # left out, and said: the report lists the images it timed (settings.images)
        print(
            f"skipped {len(unreadable)} unreadable image(s) in {folder}: {', '.join(unreadable[:5])}", file=sys.stderr
        )
    images = [(name, image) for name, image in images if image is not None]
    if not images:
        raise OSError(f"no readable images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images
