"""A second benchmark of real objects, not digits: Fashion-MNIST's product photos on real photo backgrounds.

Debian ships Fashion-MNIST (`apt-get install dataset-fashion-mnist`: 70,000
28 x 28 grey photos of ten kinds of clothing, shoes and bags, its own
60,000 / 10,000 train and test split). A sample pastes one product, scaled
so its longer side fits one of AnchorNet's receptive fields (the digits
benchmark's three sizes), at a random place of a random crop of a real photo
(the digits benchmark's backgrounds: held-out photos for the held-out split).
Unlike a digit's ink, the product keeps its own shading and texture: its
pixels are pasted as they are, tinted, wherever it is not the photo's black
surround. Nothing is downloaded; a missing package is an InputError saying
what to install.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from anchor_edge.errors import InputError
from export.data.digits import DIGIT_SIDES, NETWORK_OFFSET, NETWORK_SIZE, SPLITS, photos, random_background

#: Where Debian's dataset-fashion-mnist package puts the files.
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST's own files for each split.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Its labels 0-9, as folder names.
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
#: A product pixel darker than this is the photo's black surround, not the product.
SURROUND = 12


class Sample(NamedTuple):
    """One generated image: 256 x 256 x 3 BGR uint8, the product's box in 224 network-input coordinates, its class."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    scale: int


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd, as Fashion-MNIST and MNIST ship): uint8 images (N, rows, cols) or labels (N,)."""
    data = gzip.decompress(path.read_bytes())
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise InputError(f"{path} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if values.size != int(np.prod(shape)):
        raise InputError(f"{path} holds {values.size} values for the shape {shape} its header states")
    return values.reshape(shape)


@functools.lru_cache(maxsize=2)
def products(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of Fashion-MNIST's `split` ("train" or "test")."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    images, labels = (data_dir / name for name in FILES[split])
    if not images.is_file() or not labels.is_file():
        raise InputError(
            f"Fashion-MNIST is not in {data_dir}: install Debian's package (apt-get install dataset-fashion-mnist)"
        )
    return read_idx(images), read_idx(labels).astype(np.int64)


def make_sample(split: str, index: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Sample:
    """Sample `index` of `split`: class index % 10, size (index // 10) % 3; the same arguments give the same bytes."""
    if index < 0:
        raise InputError(f"index must be >= 0, got {index}")
    images, labels = products(split, data_dir)
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    label, scale = index % len(CLASS_NAMES), (index // len(CLASS_NAMES)) % len(DIGIT_SIDES)
    candidates = np.flatnonzero(labels == label)
    product = images[candidates[rng.integers(len(candidates))]]
    _, photo = photos(split)[rng.integers(len(photos(split)))]
    image = random_background(photo, rng)

    ys, xs = np.nonzero(product > SURROUND)
    tight = product[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    factor = int(rng.integers(DIGIT_SIDES[scale][0], DIGIT_SIDES[scale][1] + 1)) / max(tight.shape)
    height, width = max(1, round(tight.shape[0] * factor)), max(1, round(tight.shape[1] * factor))
    grey = cv2.resize(tight, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = grey > SURROUND
    y0 = NETWORK_OFFSET + int(rng.integers(NETWORK_SIZE - height + 1))
    x0 = NETWORK_OFFSET + int(rng.integers(NETWORK_SIZE - width + 1))
    tint = rng.uniform(0.6, 1.2, size=3)
    region = image[y0 : y0 + height, x0 : x0 + width]
    region[mask] = np.clip(grey[mask, None] * tint, 0, 255).astype(np.uint8)

    rows, cols = np.nonzero(mask)
    box = (
        x0 + int(cols.min()) - NETWORK_OFFSET,
        y0 + int(rows.min()) - NETWORK_OFFSET,
        x0 + int(cols.max()) + 1 - NETWORK_OFFSET,
        y0 + int(rows.max()) + 1 - NETWORK_OFFSET,
    )
    return Sample(image, box, label, scale)
