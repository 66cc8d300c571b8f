"""What the training recipes train on: a labelled image source, the digits benchmark being one of them.

A source hands out samples by (split, index, seed), each already the 224 x 224
BGR network input, so the recipes never know where images come from: the
seeded digits benchmark (`DigitsSource`, with boxes and scales) or a user's
folder (`export.data.folder.ImageFolder`, labels only).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from export.data import digits

TRAIN, HELD_OUT = "train", "test"


class LabelledImage(NamedTuple):
    """One training or held-out sample.

    image: 224 x 224 x 3 BGR uint8 network input. label: class index. box:
    (x0, y0, x1, y1) of the object in network-input pixels, and scale: index of
    its natural branch (0, 1, 2), where the source knows them (else None).
    centre: (x, y) of the object in network-input pixels where only that is
    known (a teacher's class activation peak, `export.training.taught_folder`).
    """

    image: np.ndarray
    label: int
    box: tuple[int, int, int, int] | None = None
    scale: int | None = None
    centre: tuple[float, float] | None = None


class DataSource(Protocol):
    """Samples by (split, index, seed); the same arguments give the same sample."""

    class_names: tuple[str, ...]
    #: What the samples come from and how they are drawn ("digits", a folder's absolute path and whether it mirrors,
    #: the teacher of a taught folder): part of a resumable run's identity.
    name: str
    #: Whether samples carry box and scale (box supervision and training windows need them).
    has_boxes: bool
    #: Whether `sample(..., easy=True)` gives the contrast curriculum's easy variant.
    has_easy: bool
    #: Whether training samples carry their object's centre but no box (the box terms then run centre-only).
    has_centres: bool

    def sample(self, split: str, index: int, seed: int = 0, *, easy: bool = False) -> LabelledImage: ...

    def count(self, split: str) -> int | None:
        """Distinct samples in `split`, None for a generator without end."""


class DigitsSource:
    """The digits benchmark (`export.data.digits`): endless seeded samples, with boxes, scales and an easy variant."""

    class_names = digits.CLASS_NAMES
    name = "digits"
    has_boxes = True
    has_easy = True
    has_centres = False

    def count(self, split: str) -> int | None:
        return None

    def sample(self, split: str, index: int, seed: int = 0, *, easy: bool = False) -> LabelledImage:
        generated = digits.make_sample(split, index, seed, easy=easy)
        return LabelledImage(digits.network_input(generated.image), generated.label, generated.box, generated.scale)


DIGITS = DigitsSource()
