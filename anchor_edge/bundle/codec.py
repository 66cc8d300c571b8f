"""Typed JSON for frozen dataclasses: the codec `anchor_edge.bundle.schema` reads and writes bundle.json with.

Decoding follows the dataclasses' type hints (ints, floats, strings, bools,
enums, tuples, dicts with int or str keys, unions, nested dataclasses,
generic dataclasses given their type arguments, and NamedTuples) and raises
BundleError naming the file and the dotted field at fault. Encoding is the
inverse: enums become their values, tuples lists, int keys strings, and None
fields are left out.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Union

from anchor_edge.errors import BundleError


def decode(kind: Any, value: Any, where: str, source: str) -> Any:
    """`value` (parsed JSON) as `kind`, or BundleError naming `source` and the field `where`."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return decode(option, value, where, source)
            except BundleError as error:
                errors.append(error)
        raise (
            errors[0]
            if len(errors) == 1
            else BundleError(
                f"{source}: field {where} has an unexpected form ({_kind_name(kind)} expected); re-export the bundle"
            )
        )
    if dataclasses.is_dataclass(kind):
        return _decode_fields(kind, value, where, source, typing.get_type_hints(kind), dataclasses.fields(kind))
    if dataclasses.is_dataclass(origin):  # ModelEntry[int]: each field typed by a type variable gets its argument
        bound = dict(zip(origin.__parameters__, typing.get_args(kind)))
        hints = {name: bound.get(hint, hint) for name, hint in typing.get_type_hints(origin).items()}
        return _decode_fields(origin, value, where, source, hints, dataclasses.fields(origin))
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):  # NamedTuple
        hints = typing.get_type_hints(kind)
        fields = [_Field(name, name not in kind._field_defaults) for name in kind._fields]
        return _decode_fields(kind, value, where, source, hints, fields)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(repr(member.value) for member in kind)
            raise BundleError(f"{source}: field {where} is {value!r}; expected one of {choices}") from None
    if origin is tuple:
        args = typing.get_args(kind)
        _require(value, list, where, source)
        if args[-1] is Ellipsis:
            return tuple(decode(args[0], item, f"{where}[{i}]", source) for i, item in enumerate(value))
        if len(value) != len(args):
            raise BundleError(f"{source}: field {where} must have {len(args)} entries, found {len(value)}")
        return tuple(decode(arg, item, f"{where}[{i}]", source) for i, (arg, item) in enumerate(zip(args, value)))
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        _require(value, dict, where, source)
        return {
            _key(key_kind, k, where, source): decode(value_kind, v, f"{where}.{k}", source) for k, v in value.items()
        }
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BundleError(f"{source}: field {where} must be float, got {type(value).__name__}")
        return float(value)
    _require(value, kind, where, source)
    return value


class _Field(typing.NamedTuple):
    name: str
    required: bool


def _decode_fields(kind: Any, value: Any, where: str, source: str, hints: dict, fields: Any) -> Any:
    _require(value, dict, where or "top level", source, noun="a JSON object")
    values = {}
    for item in fields:
        name = f"{where}.{item.name}" if where else item.name
        required = (
            item.required
            if isinstance(item, _Field)
            else (item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING)
        )
        if item.name not in value:
            if required:
                raise BundleError(f"{source}: field {name} is missing; re-export the bundle")
            continue
        values[item.name] = decode(hints[item.name], value[item.name], name, source)
    return kind(**values)


def _key(kind: Any, key: str, where: str, source: str) -> Any:
    if kind is int:
        try:
            return int(key)
        except ValueError:
            raise BundleError(f"{source}: field {where} must be keyed by integers, found {key!r}") from None
    return decode(kind, key, f"{where} key", source)


def _require(value: Any, kind: type, where: str, source: str, noun: str | None = None) -> None:
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise BundleError(f"{source}: field {where} must be {noun or _kind_name(kind)}, got {type(value).__name__}")


def _kind_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def encode(value: Any) -> Any:
    """Any block of the schema (or a value inside one) as the JSON it is stored as."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: encode(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: encode(item) for name, item in zip(value._fields, value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(encode(k)): encode(v) for k, v in value.items()}
    return value
