"""The downstream network's own preprocessing and class names, from flags, checked against its source.

A mismatch between the normalisation a network was trained with and the one
it is fed is the most reported cause of "TensorRT is less accurate than
PyTorch", and it never raises an error by itself. So the values come from
the source whenever it records them (timm's pretrained_cfg, a checkpoint's
class names, EfficientNet-Lite's recipe); a flag may fill in what the source
leaves open but never contradict what it says; and an assumption left
standing (ImageNet's mean and std) is logged as one.

Mean and std are given on a stated scale: ``pixel_range="0-1"`` for values
like torchvision's 0.485, ``"0-255"`` for values like Caffe's 123.68. The
bundle stores 0-255 pixel units.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anchor_edge.errors import InputError
from export.models.downstream import Downstream

log = logging.getLogger("anchor_edge")

#: How much a value on each scale is multiplied by to give 0-255 pixel units.
PIXEL_RANGES = {"0-1": 255.0, "0-255": 1.0}
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class PreprocessingFlags:
    """What the caller says about the downstream network's input; None: not said.

    mean, std: three values each, in the network's channel order, on the
    `pixel_range` scale ("0-1" or "0-255", required with either of them).
    class_names: the names themselves, or a file (one per line, or a JSON
    list) as a str or Path. channel_order: "RGB" or "BGR", the order the
    network expects.
    """

    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    pixel_range: str | None = None
    class_names: Sequence[str] | str | Path | None = None
    channel_order: str | None = None


def apply_preprocessing(downstream: Downstream, flags: PreprocessingFlags) -> Downstream:
    """`downstream` with the flags' values, after checking they agree with what its source states.

    Raises:
        InputError: a flag is malformed, lacks its scale, or contradicts the
            source (timm's config, a checkpoint, a known recipe).
    """
    if (flags.mean is None and flags.std is None) != (flags.pixel_range is None):
        raise InputError(
            "give --pixel-range (pixel_range) exactly when --mean or --std is given: '0-1' for values like "
            "0.485, '0-255' for values like 123.68"
        )
    changes: dict = {}
    if flags.pixel_range is not None:
        if flags.pixel_range not in PIXEL_RANGES:
            raise InputError(f"pixel_range must be one of {sorted(PIXEL_RANGES)}, got {flags.pixel_range!r}")
        scale = PIXEL_RANGES[flags.pixel_range]
        for field in ("mean", "std"):
            given = getattr(flags, field)
            if given is not None:
                changes[field] = _scaled(field, given, scale)
        if any(s <= 0 for s in changes.get("std", (1.0,))):
            raise InputError(f"std must be positive, got {flags.std}")
    if flags.channel_order is not None:
        if flags.channel_order.upper() not in CHANNEL_ORDERS:
            raise InputError(f"channel order must be RGB or BGR, got {flags.channel_order!r}")
        changes["channel_order"] = flags.channel_order.upper()
    if flags.class_names is not None:
        names = read_class_names(flags.class_names)
        if len(names) != downstream.num_classes:
            raise InputError(
                f"{len(names)} class names given for {downstream.name}, which has {downstream.num_classes} classes"
            )
        changes["class_names"] = names
    for field, value in changes.items():
        _check_agrees(downstream, field, value)
    assumed = not {"mean", "std"} & (downstream.stated | set(changes))  # neither stated by the source nor given
    if changes.get("channel_order", downstream.channel_order) != downstream.channel_order:
        for field in ("mean", "std"):  # an assumed value is per colour: it follows the channels to their new order
            if field not in downstream.stated and field not in changes:
                changes[field] = tuple(reversed(getattr(downstream, field)))
    result = downstream._replace(**changes)
    if result.interpolation is not None:
        log.info(
            "downstream %s was trained with %s resizing; the runtime feeds patches unresized and resizes only the "
            "whole image (INTER_AREA down, INTER_LINEAR up)",
            result.name,
            result.interpolation,
        )
    if assumed:
        log.warning(
            "downstream %s: its source records no mean and std; assuming ImageNet's (0-255: mean %s, std %s, %s). "
            "If it was trained otherwise, pass --mean, --std and --pixel-range",
            result.name,
            _rounded(result.mean),
            _rounded(result.std),
            result.channel_order,
        )
    return result


def read_class_names(source: Sequence[str] | str | Path) -> list[str]:
    """Class names from a list, or a file (a str or Path): a JSON list of strings, or one name per line
    (blank lines skipped)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"class names file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"{path} starts like JSON but does not parse ({err}); write a JSON list or one name per line"
                ) from err
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        where = str(path)
    else:
        names, where = list(source), "class_names"
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"{where} must hold a non-empty list of non-empty strings")
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{where} repeats class names {duplicates[:5]}; each class needs its own name")
    return list(names)


def _scaled(field: str, values: Sequence[float], scale: float) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{field} needs three finite numbers (one per channel), got {values}")
    return tuple(v * scale for v in values)  # type: ignore[return-value]


def _check_agrees(downstream: Downstream, field: str, value) -> None:
    """A flag may only repeat what the source states about itself."""
    if field not in downstream.stated:
        return
    stated = getattr(downstream, field)
    same = (
        all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3) for a, b in zip(stated, value))
        if field in ("mean", "std")
        else list(stated) == list(value)
    )
    if not same:
        shown = _rounded(stated) if field in ("mean", "std") else stated
        raise InputError(
            f"the {field} flag disagrees with downstream {downstream.name}, whose source says {field} "
            f"{shown!s:.200} ({'0-255 scale' if field in ('mean', 'std') else 'as recorded'}); drop the flag, "
            "or fix the source"
        )


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(v, 3) for v in values)
