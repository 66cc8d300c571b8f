"""Real photographs that ship inside scikit-image and scikit-learn.

Nothing may be downloaded here, yet verification, calibration and benchmarks
must see real images (a heatmap on noise says nothing). These packages carry a
handful of real photos on disk; this module hands them out as OpenCV-style
BGR uint8 arrays, in a fixed order, so every machine sees the same images.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

#: scikit-image's bundled colour photographs, loaded without network access.
SKIMAGE_COLOR = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "stereo_motorcycle",
    "immunohistochemistry",
    "hubble_deep_field",
)
#: scikit-image's bundled grayscale photographs.
SKIMAGE_GRAY = ("camera", "coins", "moon", "page", "text", "clock", "grass", "gravel", "brick", "cell")
#: Further real photographs scikit-image ships (a retina's fundus, microaneurysms): kept out of
#: `real_photos`, whose fixed set verification and calibration rely on; training backgrounds only.
SKIMAGE_EXTRA = ("retina", "microaneurysms")


def real_photos(*, include_gray: bool = False) -> list[tuple[str, np.ndarray]]:
    """Return (name, BGR uint8 HxWx3 image) for every bundled colour photo, grayscale ones too when asked.

    Example:
        >>> names = [name for name, _ in real_photos()]
        >>> names[:3]
        ['astronaut', 'coffee', 'chelsea']
    """
    from sklearn.datasets import load_sample_images

    photos = [(name, _skimage_photo(name)) for name in SKIMAGE_COLOR + (SKIMAGE_GRAY if include_gray else ())]
    samples = load_sample_images()
    for filename, image in zip(samples.filenames, samples.images):
        name = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        photos.append((name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))
    return photos


def extra_photos() -> list[tuple[str, np.ndarray]]:
    """Return (name, BGR uint8 image) for SKIMAGE_EXTRA, the photos `real_photos` leaves out."""
    return [(name, _skimage_photo(name)) for name in SKIMAGE_EXTRA]


def real_crops() -> np.ndarray:
    """scikit-image's LFW subset as (200, 25, 25) uint8: 100 face crops, then 100 crops of other photos."""
    import skimage.data

    return np.rint(skimage.data.lfw_subset() * 255).astype(np.uint8)


def _skimage_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos as BGR uint8 (the left view of a stereo pair)."""
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
    return cv2.cvtColor(image, code)
