"""The string choices bundle.json stores (roles, precisions, pooling, branch rules, heatmaps, presets, INT8 targets),
as enums.

Each is a `str` enum stored as its value and printed as its value, so a
manifest written by one side reads back as the same choice on the other.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from anchor_edge.errors import InputError

_Choice = TypeVar("_Choice", bound="_Named")


class _Named(str, enum.Enum):
    """A string choice stored in bundle.json as its value; prints as its value too."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def checked(cls: type[_Choice], value: object, what: str) -> _Choice:
        """`value` as this choice, or an InputError naming `what` and the values there are."""
        values = [choice.value for choice in cls]
        if value not in values:
            raise InputError(f"{what} must be one of {', '.join(values)}, got {value!r}")
        return cls(value)


class Role(_Named):
    """The two models of a bundle."""

    ANCHORNET, DOWNSTREAM = "anchornet", "downstream"


class Precision(_Named):
    """The numeric precision an ONNX model (and the engine built from it) computes in."""

    FP32, FP16, INT8 = "fp32", "fp16", "int8"


class Pooling(_Named):
    """AnchorNet's pooling of the branch maps into class scores (docs/method.md §1)."""

    GAP, ATTENTION = "gap", "attention"


class BranchRule(_Named):
    """Which branch's heatmap localizes the decided class (docs/method.md §3).

    CONFIDENT is the paper's eq. 8, the most confident branch that votes for
    the class: its receptive field is the object's size when the branches
    learned sizes (the digits' boxes). WIDEST always takes B111, for an
    AnchorNet whose branches learned no size (a folder's image labels with a
    teacher's centre, docs/decisions/022-widest-branch-without-sizes.md).
    """

    CONFIDENT, WIDEST = "confident", "widest"


class Heatmap(_Named):
    """Which map of the chosen branch LSP reads (docs/method.md §3).

    CLASS is the paper's M = F[class], the decided class's logit map. Where
    AnchorNet decides the wrong class, that map is hot away from the object.
    MAX reads, at each location, the hottest class's logit (max over classes
    of F), so a wrong decision no longer moves the patches: for an AnchorNet
    trained without boxes, whose decisions are often wrong
    (docs/decisions/026-max-heatmap-without-boxes.md).
    """

    CLASS, MAX = "class", "max"


class Preset(_Named):
    """The LSP presets of docs/method.md §4."""

    FAST, VISUAL, ACCURATE = "fast", "visual", "accurate"


class Int8Target(_Named):
    """Who runs an INT8 model: ONNX Runtime on a CPU (uint8 activations) or TensorRT (symmetric int8)."""

    CPU, TENSORRT = "cpu", "tensorrt"
