"""benchmarks/pays.py: every method's top-1, multiply-adds and time on the same images, checked against a hand count."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.backends.ort import OrtRunner
from anchor_edge.bundle import load_bundle
from anchor_edge.errors import BackendError, BundleError
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.preprocess import normalize, resize_and_crop
from benchmarks import pays
from export.data.digits import make_sample
from tests.manifests import without_downstream_cost

IMAGES = 6


def test_the_report_counts_what_each_method_did_on_the_same_images(small_bundle, baselines, tmp_path, capsys):
    out = tmp_path / "pays.json"
    argv = [
        "--bundle",
        str(small_bundle),
        "--baselines",
        str(baselines),
        "--images",
        str(IMAGES),
        "--batch-sizes",
        "1",
        "2",
        "--seconds",
        "0.2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert pays.main(argv) == 0
    assert "full image" in capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = report["top1"][f"{IMAGES} test"]
    assert set(rows) == {method.name for method in pays.METHODS} | {pays.ANCHORNET}

    # By hand: the bundle's downstream on each whole crop, and the visual preset's patches through Pipeline.
    bundle = load_bundle(small_bundle)
    samples = [make_sample("test", i, pays.TEST_SEED) for i in range(IMAGES)]
    labels = np.array([s.label for s in samples])
    crops = np.stack([resize_and_crop(s.image, bundle.resize_short, bundle.crop)[0] for s in samples])
    with OrtRunner(small_bundle / bundle.downstream.file, threads=1) as runner:
        logits = runner.run({"image": normalize(crops, bundle.downstream.mean, bundle.downstream.std)})["logits"]
    assert rows[pays.FULL_IMAGE]["top1"] == pytest.approx(100 * np.mean(logits.argmax(1) == labels), abs=0.01)
    full_cost = bundle.downstream.multiply_adds[bundle.crop]
    assert rows[pays.FULL_IMAGE]["multiply_adds"] == full_cost
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", preset="visual", threads=1) as pipe:
        predictions = pipe.predict_batch([s.image for s in samples])
    spent = [sum(bundle.downstream.multiply_adds[int(b[2] - b[0])] for b in p.boxes) for p in predictions]
    assert rows["visual"]["multiply_adds"] == pytest.approx(np.mean(spent))
    assert rows["visual"]["top1"] == pytest.approx(100 * np.mean([p.class_id for p in predictions] == labels), abs=0.01)
    assert rows[pays.ANCHORNET]["top1"] == pytest.approx(
        100 * np.mean([p.anchor_class for p in predictions] == labels), abs=0.01
    )
    assert rows["budget 0.3"]["multiply_adds"] <= rows["accurate"]["multiply_adds"]
    # The bundle's own preset's row comes from the pass that also gives AnchorNet's row: by hand as well.
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as own:
        mine = own.predict_batch([s.image for s in samples])
    own_spent = [sum(bundle.downstream.multiply_adds[int(b[2] - b[0])] for b in p.boxes) for p in mine]
    assert rows[bundle.preset]["multiply_adds"] == pytest.approx(np.mean(own_spent))
    assert rows[bundle.preset]["top1"] == pytest.approx(100 * np.mean([p.class_id for p in mine] == labels), abs=0.01)

    for size in ("1", "2"):
        timing = report["timing"][f"{IMAGES} test"][size]
        full = timing["methods"][pays.FULL_IMAGE]["wall_ms"]
        for method in timing["methods"].values():  # a median of per-round ratios: within the extremes' ratios
            wall = method["wall_ms"]
            assert wall["min"] / full["max"] <= method["ratio_to_full"] <= wall["max"] / full["min"]
        assert all(
            m["wall_ms"]["min"] <= m["wall_ms"]["p50"] <= m["wall_ms"]["max"] for m in timing["methods"].values()
        )
        stages = timing["stages_ms"]
        assert {"anchornet", "total", *pays.MODEL_TIMES} <= set(stages)
        # Host time is the wall time the networks' runs leave: some, and less than the stages' total.
        assert 0 < timing["host_share"] < 1 and 0 < timing["host_ms"] < stages["total"]
    assert (
        report["bundle"]["sha256"]["anchornet"] == bundle.anchornet.sha256
        and report["environment"]["commit"] is not None
    )
    # Fewer images than TIMED_IMAGES: every image is timed, so the timed branches are the set's, counted by hand.
    chosen = [p.branch for p in predictions]  # the visual preset decides the branch as every preset does
    by_hand = {str(b): chosen.count(b) for b in sorted(set(chosen))}
    assert report["branches"][f"{IMAGES} test"] == {"set": by_hand, "timed": by_hand}


def test_the_timed_images_hold_each_branch_in_the_sets_proportion():
    # 10 images: 5 of B63, 3 of B95, 2 of B111. Five timed: shares 2.5 / 1.5 / 1 -> floors 2 / 1 / 1, and the
    # one left goes to the larger remainder, a tie between 63 and 95 that the smaller branch wins: 3 / 1 / 1.
    branches = [63, 95, 63, 111, 63, 95, 63, 111, 95, 63]
    taken = pays.representative(branches, 5)
    assert [branches[i] for i in taken].count(63) == 3 and taken == sorted(taken)
    assert sorted(branches[i] for i in taken) == [63, 63, 63, 95, 111]
    # Spread over each branch's images: B63 sits at 0, 2, 4, 6, 9 and its three are the first, middle and last.
    assert [i for i in taken if branches[i] == 63] == [0, 4, 9]
    assert [i for i in taken if branches[i] == 111] == [3]  # one of two: the first
    assert pays.representative(branches, 10) == list(range(10)) == pays.representative(branches, 64)
    # Branches alternating over the set: the sample takes them half and half, as the set holds them.
    alternating = [63, 111] * 30
    sample = [alternating[i] for i in pays.representative(alternating, 20)]
    assert sample.count(63) == 10 and sample.count(111) == 10


def test_baselines_of_another_architecture_are_refused(small_bundle, baselines, tmp_path, capsys):
    manifest = json.loads((baselines / "baselines.json").read_text())
    manifest["models"]["full"]["name"] = "efficientnet_lite0"
    (tmp_path / "baselines.json").write_text(json.dumps(manifest))
    shutil.copy(baselines / "downstream.onnx", tmp_path)
    assert (
        pays.main(["--bundle", str(small_bundle), "--baselines", str(tmp_path), "--images", "2", "--batch-sizes", "1"])
        == 1
    )
    assert "efficientnet_lite0 baseline" in capsys.readouterr().err


def test_a_bundle_without_a_patch_sizes_cost_is_refused_in_one_line(small_bundle, baselines, tmp_path, capsys):
    # The report counts every method's multiply-adds: a hand-edited bundle.json without them is refused, not a KeyError.
    twin = without_downstream_cost(small_bundle, tmp_path / "twin", "111")
    argv = ["--bundle", str(twin), "--baselines", str(baselines), "--images", "2", "--batch-sizes", "1"]
    assert pays.main(argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no downstream multiply-adds for size(s) [111]" in error and "re-export" in error


def test_missing_baselines_say_how_to_make_them(small_bundle, tmp_path, capsys):
    assert pays.main(["--bundle", str(small_bundle), "--baselines", str(tmp_path)]) == 1
    assert "python -m export.training.baselines" in capsys.readouterr().err


def test_a_batch_larger_than_the_timed_images_is_a_usage_error(small_bundle, tmp_path, capsys):
    # Refused before a model opens: with --images 4 only 4 images of a set are timed, so batch 8 has no batch.
    with pytest.raises(SystemExit) as stop:
        pays.main(["--bundle", str(small_bundle), "--baselines", str(tmp_path), "--images", "4"])
    assert stop.value.code == 2 and "--batch-sizes: at most 4, the images timed per set" in capsys.readouterr().err


def test_every_method_runs_on_the_bundles_two_runners_with_its_own_options(small_bundle, baselines):
    with pays.open_methods(small_bundle, baselines, threads=1) as (methods, pipelines):
        assert set(pipelines) == {method.name for method in pays.METHODS[1:]}
        assert len({(id(pipe.anchornet), id(pipe.downstream)) for pipe in pipelines.values()}) == 1
        assert pipelines["fast"].lsp == PRESETS["fast"] and pipelines["budget 0.3"].lsp == PRESETS["accurate"]
        assert pipelines["budget 0.3"].budget == 0.3 and pipelines["early exit 0.5"].early_exit == 0.5
        assert pipelines["visual"].budget is None and pipelines["visual"].early_exit is None
        image = make_sample("test", 0).image
        assert len(methods[pays.FULL_IMAGE]([image])[0]) == 1
    # The block closed every runner: the full-image baseline's and the two the pipelines share.
    with pytest.raises(BackendError, match="closed"):
        methods[pays.FULL_IMAGE]([image])
    with pytest.raises(BackendError, match="closed"):
        pipelines["fast"].predict_batch([image])


def test_a_failed_open_closes_the_runners_opened_before_it(small_bundle, baselines, monkeypatch):
    opened = []

    class Recorded(OrtRunner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    def refuse(*args, **kwargs):
        raise BundleError("this bundle cannot be opened")

    monkeypatch.setattr(pays, "OrtRunner", Recorded)
    monkeypatch.setattr(pays.Pipeline, "from_bundle", refuse)
    with pytest.raises(BundleError), pays.open_methods(small_bundle, baselines, threads=1):
        pass
    assert len(opened) == 1
    with pytest.raises(BackendError, match="closed"):
        opened[0].run({"image": np.zeros((1, 3, 32, 32), np.float32)})
