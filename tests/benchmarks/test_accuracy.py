"""benchmarks/accuracy.py end to end on the small bundle, its downstream standing in for both baselines."""
import json
import shutil

import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.bundle import load_bundle
from anchor_edge.schema import Role, encode
from benchmarks.accuracy import evaluate
from benchmarks.accuracy_report import EARLY_EXIT_THRESHOLDS, early_exit_key, summarize
from export.data.digits import make_sample

IMAGES = 6


@pytest.fixture(scope="module")
def baselines(small_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("baselines")
    bundle = load_bundle(small_bundle)
    entry = encode(bundle.downstream)
    shutil.copy(bundle.path(Role.DOWNSTREAM), folder / "downstream.onnx")
    model = {"file": "downstream.onnx", "mean": entry["mean"], "std": entry["std"], "multiply_adds": entry["multiply_adds"]}
    (folder / "baselines.json").write_text(json.dumps({"models": {"full": model, "resized": model}}))
    return folder


@pytest.fixture(scope="module")
def records(small_bundle, baselines):
    return evaluate(small_bundle, baselines, IMAGES, batch=4, threads=1)


def test_patches_and_early_exit_are_the_pipelines_own(small_bundle, records):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", preset="accurate", threads=1) as pipeline:
        expected = pipeline.predict_batch([make_sample("test", i).image for i in range(IMAGES)])
    assert [r["patches_accurate"] for r in records] == [p.class_id for p in expected]
    assert [len(r["patch_sizes_patches_accurate"]) for r in records] == [len(p.boxes) for p in expected]
    for row, prediction in zip(records, expected):
        confidence = np.cumsum(prediction.patch_probs.astype(np.float64), axis=0).max(axis=1) / np.arange(1, len(prediction.boxes) + 1)
        for threshold in EARLY_EXIT_THRESHOLDS:
            reached = np.flatnonzero(confidence >= threshold)
            used = int(reached[0]) + 1 if len(reached) else len(confidence)
            assert len(row[f"patch_sizes_{early_exit_key(threshold)}"]) == used
            assert row[early_exit_key(threshold)] == int(prediction.patch_probs[:used].sum(axis=0).argmax())


def test_the_report_summarizes_every_method(small_bundle, baselines, records):
    report = summarize(records, load_bundle(small_bundle).manifest, json.loads((baselines / "baselines.json").read_text())["models"])
    keys = {m["key"] for m in report["methods"]}
    assert {"full", "patches_visual", "patches_accurate", *map(early_exit_key, EARLY_EXIT_THRESHOLDS)} <= keys
    assert report["images"] == IMAGES
