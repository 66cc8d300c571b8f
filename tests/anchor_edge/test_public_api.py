"""Every name README.md and docs/python-api.md document is importable where they say it is."""

from __future__ import annotations

import builtins
import importlib
import re
from pathlib import Path

import pytest

import anchor_edge

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", REPO / "docs" / "python-api.md"]


def documented_paths() -> set[str]:
    """Dotted names such as anchor_edge.method.lsp.select_patches, and `from anchor_edge import A, B` names."""
    names: set[str] = set()
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        names |= set(re.findall(r"\banchor_edge(?:\.\w+)+", text))
        for module, imported in re.findall(r"from (anchor_edge(?:\.\w+)*) import ([\w, ]+)", text):
            names |= {f"{module}.{name.strip()}" for name in imported.split(",") if name.strip()}
        names |= {f"anchor_edge.{error}" for error in re.findall(r"`(\w+Error)`", text) if not hasattr(builtins, error)}
        names |= {
            f"{path}.{other}"
            for path, *others in re.findall(r"`(anchor_edge(?:\.\w+)+)\.\w+ / (\w+) / (\w+)`", text)
            for other in others
        }
    return names


def resolve(path: str) -> object:
    """Import the longest module prefix of `path`, then get the remaining attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(path)


def test_the_documents_name_the_api():
    names = documented_paths()
    assert {
        "anchor_edge.Pipeline",
        "anchor_edge.method.lsp.select_patches",
        "anchor_edge.SourceError",
        "anchor_edge.method.preprocess.normalize",
    } <= names


@pytest.mark.parametrize("path", sorted(documented_paths()))
def test_documented_name_is_importable(path):
    resolve(path)


def test_the_error_family_is_exported_whole():
    errors = {name for name in dir(anchor_edge.errors) if name.endswith("Error")}
    assert errors == {
        "AnchorEdgeError",
        "InputError",
        "SourceError",
        "BundleError",
        "BackendError",
        "ExportError",
        "ClusterError",
    }
    assert errors <= set(anchor_edge.__all__)
    assert issubclass(anchor_edge.SourceError, anchor_edge.InputError)


def test_pipeline_keeps_its_documented_methods():
    for method in ("from_bundle", "predict_batch", "stream", "close", "__call__", "__enter__", "__exit__"):
        assert callable(getattr(anchor_edge.Pipeline, method))
