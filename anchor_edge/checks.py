"""Argument checks the library repeats, written once so one rule has one wording.

Each raises `InputError` naming the argument and the value it got.
"""

from __future__ import annotations

import numbers

from anchor_edge.errors import InputError


def positive_int(name: str, value: object) -> int:
    """`value` as an int when it is an integer >= 1 (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def positive_int_or_none(name: str, value: object) -> int | None:
    """None (the backend's or library's own choice), or an integer >= 1."""
    return None if value is None else positive_int(name, value)
