"""Load and validate a bundle: the contract between the export stage and the runtime.

A bundle is a directory holding `bundle.json` and the model files it names.
The export stage writes it (export/bundle/); the runtime needs nothing else
to run. Loading validates bundle.json through `anchor_edge.bundle.schema` and then
checks every model file's sha256, so a truncated copy or a tampered model
fails here, naming the file, rather than producing wrong answers later.
docs/bundle-format.md documents every field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import MANIFEST_NAME, Branch, Manifest, ModelEntry, read_manifest
from anchor_edge.errors import BundleError

_T = TypeVar("_T")


class _FromManifest(Generic[_T]):
    """A read-only Bundle attribute that reads one value of its manifest."""

    def __init__(self, read: Callable[[Manifest], _T]) -> None:
        self.read = read

    def __get__(self, bundle: "Bundle", owner: type | None = None) -> _T:
        return self.read(bundle.manifest)


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: its directory and its manifest, with the fields the pipeline reads most at hand."""

    root: Path
    manifest: Manifest

    anchornet: ClassVar[_FromManifest[ModelEntry[int]]] = _FromManifest(lambda m: m.models.anchornet)
    downstream: ClassVar[_FromManifest[ModelEntry[dict[int, int]]]] = _FromManifest(lambda m: m.models.downstream)
    num_classes: ClassVar[_FromManifest[int]] = _FromManifest(lambda m: m.num_classes)
    class_names: ClassVar[_FromManifest[tuple[str, ...]]] = _FromManifest(lambda m: m.class_names)
    resize_short: ClassVar[_FromManifest[int]] = _FromManifest(lambda m: m.preprocess.resize_short)
    crop: ClassVar[_FromManifest[int]] = _FromManifest(lambda m: m.preprocess.crop)
    branches: ClassVar[_FromManifest[tuple[Branch, ...]]] = _FromManifest(lambda m: m.branches)
    vote_min: ClassVar[_FromManifest[int]] = _FromManifest(lambda m: m.decision.vote_min)
    branch_rule: ClassVar[_FromManifest[str]] = _FromManifest(lambda m: m.decision.branch_rule.value)
    heatmap: ClassVar[_FromManifest[str]] = _FromManifest(lambda m: m.decision.heatmap.value)
    anchor_vote: ClassVar[_FromManifest[float]] = _FromManifest(lambda m: m.decision.anchor_vote)
    preset: ClassVar[_FromManifest[str]] = _FromManifest(lambda m: m.lsp.preset.value)
    trained: ClassVar[_FromManifest[bool]] = _FromManifest(lambda m: m.trained)
    #: {"anchornet": sha256, "downstream": sha256} of the ONNX models: what a report or a job's rows were made by.
    model_sha256s: ClassVar[_FromManifest[dict[str, str]]] = _FromManifest(
        lambda m: {role.value: m.models[role].sha256 for role in Role}
    )

    def path(self, role: Role) -> Path:
        """The model file of `role` (a name inside the bundle directory, checked by the schema)."""
        return self.root / self.manifest.models[role].file

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME


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
        >>> bundle.path(Role.DOWNSTREAM).name
        'downstream.onnx'
    """
    root = Path(path)
    if root.name == MANIFEST_NAME:
        root = root.parent
    bundle = Bundle(root, read_manifest(root))
    for role in Role:
        _check_model_file(bundle, role, verify_checksums)
    return bundle


def _check_model_file(bundle: Bundle, role: Role, verify: bool) -> None:
    file_path = bundle.path(role)
    if file_path.is_symlink() or not file_path.is_file():
        what = "is a link" if file_path.is_symlink() else "is missing from the bundle"
        raise BundleError(f"{file_path} (models.{role}.file) {what}; re-export it")
    if verify and sha256_of(file_path) != bundle.manifest.models[role].sha256:
        raise BundleError(
            f"{file_path} does not match its sha256 in {bundle.manifest_path}: the file was modified or truncated; "
            "re-export the bundle"
        )
