"""Load and validate a bundle: the contract between the export stage and the runtime.

A bundle is a directory holding `bundle.json` and the model files it names.
The export stage writes it (export/bundle_writer.py); the runtime needs
nothing else to run. Loading checks the schema and every model file's sha256,
so a truncated copy or a tampered model fails here, naming the file, rather
than producing wrong answers later. The schema is documented in the README.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

SCHEMA_VERSION = 1
MODEL_ROLES = ("anchornet", "downstream")


@dataclass(frozen=True)
class Branch:
    """One localization branch: its receptive field is the patch size it maps to (SPEC section 2)."""

    name: str
    receptive_field: int
    stride: int
    map_output: str
    attention_output: str | None


@dataclass(frozen=True)
class ModelEntry:
    """One model of the bundle, as bundle.json describes it."""

    role: str
    path: Path
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class Bundle:
    """A validated bundle. `meta` is the whole bundle.json for fields the runtime does not interpret."""

    root: Path
    num_classes: int
    class_names: tuple[str, ...]
    resize_short: int
    crop: int
    branches: tuple[Branch, ...]
    vote_min: int
    preset: str
    trained: bool
    anchornet: ModelEntry
    downstream: ModelEntry
    meta: dict[str, Any]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large engines do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(path: str | Path, *, verify_checksums: bool = True) -> Bundle:
    """Read `path/bundle.json`, validate it and (by default) every model file's sha256.

    Args:
        path: the bundle directory (or its bundle.json).
        verify_checksums: hash every model file against bundle.json.

    Returns:
        The validated Bundle.

    Raises:
        BundleError: naming the missing file, the bad field or the mismatching checksum.

    Example:
        >>> bundle = load_bundle("bundles/default")
        >>> bundle.downstream.path.name
        'downstream.onnx'
    """
    root = Path(path)
    if root.name == "bundle.json":
        root = root.parent
    manifest = root / "bundle.json"
    if not manifest.is_file():
        raise BundleError(f"{manifest} not found: export a bundle first (python export/to_trt.py --out {root})")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest} is not valid JSON ({exc}); re-export the bundle") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{manifest} must hold a JSON object")
    fields = _Fields(manifest, meta)
    version = fields.get("schema_version", int)
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest} has schema_version {version}; this anchor-edge reads {SCHEMA_VERSION}: re-export the bundle"
        )
    num_classes = fields.get("num_classes", int)
    class_names = tuple(fields.get("class_names", list))
    if len(class_names) != num_classes:
        raise BundleError(f"{manifest}: class_names has {len(class_names)} entries, num_classes is {num_classes}")
    preprocess = fields.get("preprocess", dict)
    branches = tuple(_branch(manifest, item) for item in fields.get("branches", list))
    if len(branches) != 3:
        raise BundleError(f"{manifest}: expected 3 branches (B63, B95, B111), found {len(branches)}")
    models = fields.get("models", dict)
    entries = {role: _model_entry(root, manifest, role, models, verify_checksums) for role in MODEL_ROLES}
    return Bundle(
        root=root,
        num_classes=num_classes,
        class_names=class_names,
        resize_short=_Fields(manifest, preprocess, "preprocess").get("resize_short", int),
        crop=_Fields(manifest, preprocess, "preprocess").get("crop", int),
        branches=branches,
        vote_min=_Fields(manifest, fields.get("decision", dict), "decision").get("vote_min", int),
        preset=_Fields(manifest, fields.get("lsp", dict), "lsp").get("preset", str),
        trained=fields.get("trained", bool),
        anchornet=entries["anchornet"],
        downstream=entries["downstream"],
        meta=meta,
    )


def _branch(manifest: Path, item: Any) -> Branch:
    fields = _Fields(manifest, item, "branches[]")
    attention = item.get("attention_output")
    return Branch(
        name=fields.get("name", str),
        receptive_field=fields.get("receptive_field", int),
        stride=fields.get("stride", int),
        map_output=fields.get("map_output", str),
        attention_output=attention if isinstance(attention, str) else None,
    )


def _model_entry(root: Path, manifest: Path, role: str, models: dict, verify: bool) -> ModelEntry:
    if role not in models:
        raise BundleError(f"{manifest}: models.{role} is missing")
    fields = _Fields(manifest, models[role], f"models.{role}")
    file_path = root / fields.get("file", str)
    if not file_path.is_file():
        raise BundleError(f"{file_path} (models.{role}.file) is missing from the bundle; re-export it")
    sha = fields.get("sha256", str)
    if verify and sha256_of(file_path) != sha:
        raise BundleError(
            f"{file_path} does not match its sha256 in {manifest}: the file was modified or truncated; re-export the bundle"
        )
    mean, std = fields.get("mean", list), fields.get("std", list)
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise BundleError(f"{manifest}: models.{role}.mean/std must be 3 numbers each, std > 0")
    return ModelEntry(
        role=role,
        path=file_path,
        sha256=sha,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        precision=fields.get("precision", str),
        meta=models[role],
    )


class _Fields:
    """Typed access to one JSON object, with errors that name the field and the file."""

    def __init__(self, manifest: Path, obj: Any, where: str = "") -> None:
        if not isinstance(obj, dict):
            raise BundleError(f"{manifest}: {where or 'top level'} must be a JSON object")
        self.manifest, self.obj, self.where = manifest, obj, where

    def get(self, key: str, kind: type) -> Any:
        name = f"{self.where}.{key}" if self.where else key
        if key not in self.obj:
            raise BundleError(f"{self.manifest}: field {name} is missing; re-export the bundle")
        value = self.obj[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise BundleError(f"{self.manifest}: field {name} must be {kind.__name__}, got {type(value).__name__}")
        return value
