"""A baselines folder for the benchmarks that compare against one, written through the typed baselines.json."""

from __future__ import annotations

import shutil

import pytest

from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.baselines import BaselineEntry, BaselineModels, Baselines, write_baselines
from anchor_edge.bundle.choices import Role


@pytest.fixture(scope="module")
def baselines(small_bundle, tmp_path_factory):
    """Both baselines are the small bundle's own downstream (same file, normalization and costs), so a test can
    work out by hand what a benchmark must report for them."""
    bundle = load_bundle(small_bundle)
    folder = tmp_path_factory.mktemp("baselines")
    shutil.copy(bundle.path(Role.DOWNSTREAM), folder / "downstream.onnx")
    entry = bundle.downstream
    assert entry.name is not None and entry.verification is not None
    model = BaselineEntry(
        file="downstream.onnx",
        name=entry.name,
        weights=entry.weights,
        mean=entry.mean,
        std=entry.std,
        multiply_adds=entry.multiply_adds,
        verification=entry.verification,
    )
    write_baselines(folder, Baselines(BaselineModels(full=model, resized=model)))
    return folder
