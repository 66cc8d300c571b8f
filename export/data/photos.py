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
SKIMAGE_COLOR = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "immunohistochemistry", "hubble_deep_field")
#: scikit-image's bundled grayscale photographs.
SKIMAGE_GRAY = ("camera", "coins", "moon", "page", "text", "clock", "grass", "gravel", "brick", "cell")


def real_photos(*, include_gray: bool = False) -> list[tuple[str, np.ndarray]]:
    """Return (name, BGR uint8 HxWx3 image) for every bundled colour photo, grayscale ones too when asked.

    Example:
        >>> names = [name for name, _ in real_photos()]
        >>> names[:3]
        ['astronaut', 'coffee', 'chelsea']
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_COLOR + (SKIMAGE_GRAY if include_gray else ()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo pairs: keep the left view
            image = image[0]
        code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
        photos.append((name, cv2.cvtColor(image, code)))
    samples = load_sample_images()
    for filename, image in zip(samples.filenames, samples.images):
        name = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        photos.append((name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)))
    return photos
