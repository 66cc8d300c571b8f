"""baselines.json as types: the benchmarks' baseline classifiers, read and written like bundle.json.

A bundle holds one downstream network, the one fine-tuned on patches. The
benchmarks compare it with the same architecture trained on full images and,
where the architecture's recipe trains one, on resized images.
`python -m export.training.baselines` writes those into a directory of their
own (bundles/default-baselines) with baselines.json; benchmarks/pays.py and
benchmarks/accuracy.py read it. Writer and readers go through these types and
the bundle's codec, so they cannot drift apart, and a bad file is a
BundleError naming the field and the command that rewrites it, not a
KeyError inside a benchmark. docs/bundle-format.md documents every field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.bundle.codec import decode, encode
from anchor_edge.bundle.precision_records import Verification
from anchor_edge.bundle.schema import is_plain_file_name
from anchor_edge.errors import BundleError

BASELINES_NAME = "baselines.json"
EXPORT_COMMAND = "python -m export.training.baselines"


@dataclass(frozen=True)
class BaselineEntry:
    """One baseline classifier: its ONNX file (dynamic batch and size, output "logits"), how to feed it, its cost."""

    file: str
    name: str
    weights: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    multiply_adds: dict[int, int]
    verification: Verification


@dataclass(frozen=True)
class BaselineModels:
    """The baselines by kind: `full` always, `resized` only where the recipe trains one (ResNet-50's does not)."""

    full: BaselineEntry
    resized: BaselineEntry | None = None


@dataclass(frozen=True)
class Baselines:
    """The whole baselines.json."""

    models: BaselineModels

    @classmethod
    def from_json(cls, data: Any, *, source: str = BASELINES_NAME) -> Baselines:
        """Validate parsed baselines.json; BundleError names `source`, the field at fault and how to rewrite it."""
        if not isinstance(data, Mapping):
            raise BundleError(f"{source} must hold a JSON object; rewrite it with {EXPORT_COMMAND}")
        baselines = decode(cls, data, "", source)
        for kind in ("full", "resized"):
            entry = getattr(baselines.models, kind)
            if entry is None:
                continue
            if not is_plain_file_name(entry.file):
                raise BundleError(
                    f"{source}: models.{kind}.file is {entry.file!r}, which is not a file name inside its directory; "
                    f"rewrite it with {EXPORT_COMMAND}"
                )
            if any(s <= 0 for s in entry.std):
                raise BundleError(f"{source}: models.{kind}.std must be positive; rewrite it with {EXPORT_COMMAND}")
        return baselines

    def to_json(self) -> dict[str, Any]:
        """The JSON object `from_json` reads back (an absent `resized` is left out)."""
        return encode(self)


def read_baselines(directory: Path) -> Baselines:
    """Parse and validate `directory/baselines.json` (no model file is opened)."""
    path = Path(directory) / BASELINES_NAME
    if not path.is_file():
        raise BundleError(f"no baselines in {directory}; make them with: {EXPORT_COMMAND} --out {directory}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); rewrite it with {EXPORT_COMMAND}") from exc
    return Baselines.from_json(data, source=str(path))


def read_baselines_for(directory: Path, downstream: str) -> Baselines:
    """`read_baselines`, refusing baselines of another network than the bundle's `downstream`: a comparison of
    two architectures would say nothing about the method."""
    baselines = read_baselines(directory)
    if baselines.models.full.name != downstream:
        raise BundleError(
            f"{directory} holds a {baselines.models.full.name} baseline and the bundle's downstream is "
            f"{downstream}: {EXPORT_COMMAND} --architecture {downstream}"
        )
    return baselines


def write_baselines(directory: Path, baselines: Baselines) -> Path:
    """Write `directory/baselines.json` (indented, one trailing newline) atomically; returns its path."""
    path = Path(directory) / BASELINES_NAME
    write_atomically(path, (json.dumps(baselines.to_json(), indent=2) + "\n").encode("utf-8"))
    return path
