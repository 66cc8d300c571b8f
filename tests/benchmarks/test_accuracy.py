"""benchmarks/accuracy.py end to end on the small bundle, its downstream standing in for both baselines."""

import json

import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.bundle import load_bundle
from anchor_edge.errors import BundleError
from benchmarks.accuracy import evaluate, read_both_baselines
from benchmarks.accuracy_report import BUDGETS, EARLY_EXIT_THRESHOLDS, budget_key, early_exit_key, summarize
from export.data.digits import make_sample

IMAGES = 6


@pytest.fixture(scope="module")
def records(small_bundle, baselines):
    return evaluate(small_bundle, baselines, IMAGES, batch=4, threads=1)


def test_patches_and_early_exit_are_the_pipelines_own(small_bundle, records):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", preset="accurate", threads=1) as pipeline:
        expected = pipeline.predict_batch([make_sample("test", i).image for i in range(IMAGES)])
    assert [r["patches_accurate"] for r in records] == [p.class_id for p in expected]
    assert [len(r["patch_sizes_patches_accurate"]) for r in records] == [len(p.boxes) for p in expected]
    for row, prediction in zip(records, expected):
        confidence = np.cumsum(prediction.patch_probs.astype(np.float64), axis=0).max(axis=1) / np.arange(
            1, len(prediction.boxes) + 1
        )
        for threshold in EARLY_EXIT_THRESHOLDS:
            reached = np.flatnonzero(confidence >= threshold)
            used = int(reached[0]) + 1 if len(reached) else len(confidence)
            # The round holding patch `used` ran to its end (rounds end at 1, 2, 4, 8, ...): its patches are paid.
            ran = min(len(prediction.boxes), next(end for end in (1, 2, 4, 8, 16, 32, 64) if end >= used))
            assert len(row[f"patch_sizes_{early_exit_key(threshold)}"]) == ran
            assert row[early_exit_key(threshold)] == int(prediction.patch_probs[:used].sum(axis=0).argmax())


def test_the_report_summarizes_every_method_with_the_pipelines_numbers(small_bundle, baselines, records):
    bundle = load_bundle(small_bundle)
    report = summarize(records, bundle.manifest, *read_both_baselines(baselines, bundle.downstream.name))
    methods = {m["key"]: m for m in report["methods"]}
    assert {"full", "patches_visual", "patches_accurate", *map(early_exit_key, EARLY_EXIT_THRESHOLDS)} <= set(methods)
    assert report["images"] == IMAGES
    costs = bundle.downstream.multiply_adds
    samples = [make_sample("test", i) for i in range(IMAGES)]
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", preset="visual", threads=1) as pipeline:
        visual = pipeline.predict_batch([s.image for s in samples])
    hits = sum(p.class_id == s.label for p, s in zip(visual, samples))
    assert methods["patches_visual"]["top1"] == pytest.approx(100.0 * hits / IMAGES, abs=0.01)
    spent = np.mean([sum(costs[int(b[2] - b[0])] for b in p.boxes) for p in visual])
    assert methods["patches_visual"]["multiply_adds"] == pytest.approx(spent)
    assert methods["full"]["multiply_adds"] == costs[224] and methods["full"]["over_full"] == 1.0
    # a budget never spends more than its share of the full image, per image
    for budget in BUDGETS:
        for row in records:
            assert sum(costs[s] for s in row[f"patch_sizes_{budget_key(budget)}"]) <= budget * costs[224]


def test_baselines_of_another_network_are_refused_before_any_work(small_bundle, baselines, tmp_path, capsys):
    from benchmarks.accuracy import main

    with pytest.raises(BundleError, match="baseline and the bundle's downstream is another_net: python -m export"):
        read_both_baselines(baselines, "another_net")
    manifest = json.loads((baselines / "baselines.json").read_text())
    manifest["models"]["full"]["name"] = manifest["models"]["resized"]["name"] = "another_net"
    (tmp_path / "baselines.json").write_text(json.dumps(manifest))
    out = tmp_path / "report" / "accuracy.json"
    assert main(["--bundle", str(small_bundle), "--baselines", str(tmp_path), "--json", str(out)]) == 1
    assert "another_net baseline" in capsys.readouterr().err and not out.exists()


def test_a_bundle_that_gives_anchornet_a_vote_is_refused_rather_than_scored_by_its_patches(
    small_bundle, baselines, tmp_path, capsys
):
    import shutil

    from benchmarks.accuracy import main

    voted = shutil.copytree(small_bundle, tmp_path / "voted")
    manifest = json.loads((voted / "bundle.json").read_text())
    manifest["decision"]["anchor_vote"] = 2.0
    (voted / "bundle.json").write_text(json.dumps(manifest))
    out = tmp_path / "report" / "accuracy.json"
    assert main(["--bundle", str(voted), "--baselines", str(baselines), "--json", str(out)]) == 1
    assert "decision.anchor_vote 2.0" in capsys.readouterr().err and not out.exists()


def test_the_written_report_names_the_commit_and_the_models_it_measured(small_bundle, baselines, tmp_path):
    from benchmarks.accuracy import main

    out = tmp_path / "accuracy.json"
    assert (
        main(["--bundle", str(small_bundle), "--baselines", str(baselines), "--images", "2", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    manifest = json.loads((small_bundle / "bundle.json").read_text())
    assert report["bundle"]["sha256"] == {role: entry["sha256"] for role, entry in manifest["models"].items()}
    assert "commit" in report["environment"] and report["images"] == 2
