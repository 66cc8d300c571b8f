"""`anchor-edge eval` on a labelled folder of real photos: each image's classes equal Pipeline.predict_batch's,
the full image equals the downstream model run on its own, the counts and comparisons follow from those."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role
from anchor_edge.method.preprocess import normalize, resize_and_crop
from tests.manifests import without_downstream_cost

REPO = Path(__file__).resolve().parents[3]
PHOTOS_PER_CLASS = 2
CLASSES_USED = 3


def anchor_edge(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "anchor_edge", *(str(a) for a in args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def class_names(small_bundle) -> tuple[str, ...]:
    return load_bundle(small_bundle).class_names


@pytest.fixture(scope="module")
def labelled(photos, class_names, tmp_path_factory) -> tuple[Path, dict[Path, int], Path]:
    """(folder, {image: class id}, the broken file): three class folders of two photos, one file not an image."""
    root = tmp_path_factory.mktemp("labelled")
    labels = {}
    for k, (name, image) in enumerate(photos[: CLASSES_USED * PHOTOS_PER_CLASS]):
        class_id = k // PHOTOS_PER_CLASS
        path = root / class_names[class_id] / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), image)
        labels[path] = class_id
    broken = root / class_names[1] / "broken.jpg"
    broken.write_bytes(b"not an image")
    return root, labels, broken


def expected_results(bundle: Path, labels: dict[Path, int], backend: str, **options) -> dict[str, dict]:
    """Per image, independently: predict_batch's classes and patch cost (Pipeline `options`), the downstream model on
    the whole crop."""
    manifest = load_bundle(bundle).manifest
    costs = {int(size): value for size, value in manifest.models.downstream.multiply_adds.items()}
    downstream = _downstream_session(bundle)
    entry = manifest.models.downstream
    names = manifest.class_names
    expected = {}
    with Pipeline.from_bundle(bundle, backend=backend, threads=1, **options) as pipe:
        for path, label in labels.items():
            prediction = pipe.predict_batch([path])[0]
            crop, _ = resize_and_crop(cv2.imread(str(path)), manifest.preprocess.resize_short, manifest.preprocess.crop)
            logits = downstream.run(None, {downstream.get_inputs()[0].name: normalize(crop, entry.mean, entry.std)})[0]
            sizes = prediction.boxes[:, 2] - prediction.boxes[:, 0]
            expected[str(path)] = {
                "label": names[label],
                "pipeline": prediction.label,
                "full_image": names[int(logits[0].argmax())],
                "anchornet": names[prediction.anchor_class],
                "patches": len(prediction.boxes),
                "downstream_multiply_adds": int(sum(costs[int(s)] for s in sizes)),
            }
    return expected


def _downstream_session(bundle: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(load_bundle(bundle).path(Role.DOWNSTREAM)), options, ["CPUExecutionProvider"]
    )


def top1(expected: dict[str, dict], name: str) -> float:
    return float(np.mean([e[name] == e["label"] for e in expected.values()]))


@pytest.fixture(scope="module")
def compared(small_bundle, labelled, tmp_path_factory):
    """One run: ONNX Runtime, compared with the same bundle on OpenVINO, as JSON and a PNG."""
    png = tmp_path_factory.mktemp("eval") / "eval.png"
    args = ["--backend", "onnxruntime", "--threads", "1", "--compare-backend", "openvino", "--json", "--png", png]
    result = anchor_edge("eval", small_bundle, "--data", labelled[0], *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), png


def test_eval_agrees_with_predict_batch_image_by_image_on_onnxruntime(small_bundle, labelled, compared):
    report, _ = compared
    root, labels, broken = labelled
    expected = expected_results(small_bundle, labels, "onnxruntime")
    got = {
        p["path"]: {k: v for k, v in p.items() if not k.endswith("_ms") and k != "path"} for p in report["predictions"]
    }
    assert got == expected
    assert (report["backend"], report["images"]) == ("onnxruntime", len(labels))
    assert report["top1"] == {
        name: pytest.approx(top1(expected, name)) for name in ("pipeline", "full_image", "anchornet")
    }
    assert [row["images"] for row in report["per_class"]] == [PHOTOS_PER_CLASS] * CLASSES_USED
    assert [s["path"] for s in report["skipped"]] == [str(broken)]


def test_eval_takes_the_widest_branch_rule_and_max_heatmap_as_predict_batch_does(small_bundle, labelled):
    root, labels, _ = labelled
    args = ["--backend", "onnxruntime", "--threads", "1", "--branch-rule", "widest", "--heatmap", "max", "--json"]
    result = anchor_edge("eval", small_bundle, "--data", root, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["settings"]["branch_rule"], report["settings"]["heatmap"]) == ("widest", "max")
    expected = expected_results(small_bundle, labels, "onnxruntime", branch_rule="widest", heatmap="max")
    got = {
        p["path"]: {k: v for k, v in p.items() if not k.endswith("_ms") and k != "path"} for p in report["predictions"]
    }
    assert got == expected
    costs = load_bundle(small_bundle).manifest.models.downstream.multiply_adds
    cost_111 = int(costs[111] if 111 in costs else costs["111"])
    assert all(e["downstream_multiply_adds"] == e["patches"] * cost_111 for e in expected.values())


def test_eval_takes_an_anchor_vote_as_predict_batch_does_and_refuses_a_negative_one(small_bundle, labelled):
    root, labels, _ = labelled
    args = ["--backend", "onnxruntime", "--threads", "1", "--anchor-vote", "1000", "--json"]
    result = anchor_edge("eval", small_bundle, "--data", root, *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["anchor_vote"] == 1000.0
    expected = expected_results(small_bundle, labels, "onnxruntime", anchor_vote=1000.0)
    got = {p["path"]: p["pipeline"] for p in report["predictions"]}
    assert got == {path: e["pipeline"] for path, e in expected.items()}
    assert all(e["pipeline"] == e["anchornet"] for e in expected.values()), "AnchorNet outvotes every patch"
    refused = anchor_edge("eval", small_bundle, "--data", root, "--anchor-vote", "-1")
    assert refused.returncode == 2 and "--anchor-vote: needs a number >= 0, got '-1'" in refused.stderr


def test_eval_reports_multiply_adds_and_paired_times_from_its_images(small_bundle, compared):
    report, _ = compared
    recorded = load_bundle(small_bundle).manifest.models.downstream.multiply_adds
    full = int(recorded[224] if 224 in recorded else recorded["224"])
    spent = [p["downstream_multiply_adds"] for p in report["predictions"]]
    assert report["multiply_adds"]["full_image"] == full
    assert report["multiply_adds"]["pipeline_downstream_mean"] == round(np.mean(spent))
    ratios = [p["pipeline_ms"] / p["full_image_ms"] for p in report["predictions"]]
    assert all(p["pipeline_ms"] > 0 and p["full_image_ms"] > 0 for p in report["predictions"])
    assert report["time_ms"]["pipeline_over_full_paired"] == pytest.approx(np.median(ratios), rel=0.02)


def test_eval_compares_with_openvino_on_the_same_images(small_bundle, labelled, compared):
    report, png = compared
    second = report["compare"]
    expected = expected_results(small_bundle, labelled[1], "openvino")
    got = {p["path"]: p["pipeline"] for p in second["predictions"]}
    assert second["backend"] == "openvino" and got == {path: e["pipeline"] for path, e in expected.items()}
    first = {p["path"]: p for p in report["predictions"]}
    same = np.mean([first[p["path"]]["pipeline"] == p["pipeline"] for p in second["predictions"]])
    assert second["agreement"]["pipeline"] == pytest.approx(same)
    assert cv2.imread(str(png)) is not None


def test_eval_on_openvino_prints_a_table(small_bundle, labelled):
    root, labels, _ = labelled
    result = anchor_edge("eval", small_bundle, "--data", root, "--backend", "openvino", "--threads", "1")
    assert result.returncode == 0, result.stderr
    expected = expected_results(small_bundle, labels, "openvino")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"bundle {small_bundle} on openvino") and f"{len(labels)} images of {root}" in lines[0]
    row = next(line for line in lines if line.startswith(f"all ({len(labels)})"))
    shares = [f"{100 * top1(expected, name):.1f}" for name in ("pipeline", "full_image", "anchornet")]
    assert row.split()[2:] == [part for share in shares for part in (share, "%")]
    assert "1 image file(s) skipped" in result.stderr


def test_a_folder_without_class_folders_has_no_labels(small_bundle, photos, tmp_path):
    cv2.imwrite(str(tmp_path / "cat.png"), photos[0][1])
    result = anchor_edge("eval", small_bundle, "--data", tmp_path, "--backend", "onnxruntime")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "1 image(s) but no class subfolders, so no labels" in result.stderr


def test_an_unknown_class_folder_is_named(small_bundle, photos, class_names, tmp_path):
    for name in (class_names[0], "zebra"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), photos[0][1])
    result = anchor_edge("eval", small_bundle, "--data", tmp_path, "--backend", "onnxruntime")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "unknown class folder(s) ['zebra']" in result.stderr and repr(class_names[0]) in result.stderr


def test_held_out_scores_only_the_files_training_held_out_and_a_failed_chart_loses_no_result(
    small_bundle, photos, class_names, tmp_path
):
    for j in range(5):  # one class, five files: training on the folder would hold out file 4 alone
        (tmp_path / class_names[0]).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / class_names[0] / f"{j}.png"), photos[j][1])
    result = anchor_edge("eval", small_bundle, "--data", tmp_path, "--held-out", "--backend", "onnxruntime", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 1
    (tmp_path / "a-file").write_text("")  # a chart that cannot be written: the results are out before it
    unwritable = tmp_path / "a-file" / "eval.png"
    charted = anchor_edge("eval", small_bundle, "--data", tmp_path, "--held-out", "--json", "--png", unwritable)
    assert charted.returncode == 1 and json.loads(charted.stdout)["images"] == 1
    (tmp_path / "a-file").unlink()
    (tmp_path / "train").mkdir()
    (tmp_path / class_names[0]).rename(tmp_path / "val")
    refused = anchor_edge("eval", small_bundle, "--data", tmp_path, "--held-out", "--backend", "onnxruntime")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "drop --held-out" in refused.stderr


def test_eval_compares_a_second_bundle(small_bundle, rolled_bundle, labelled):
    """A second bundle whose downstream answers class c + 1 where the first answers c: it is opened, named, and
    disagrees with the first on every image, each of its classes the first's plus one."""
    root, labels, _ = labelled
    args = ["--backend", "onnxruntime", "--threads", "1", "--compare", rolled_bundle]
    report = anchor_edge("eval", small_bundle, "--data", root, *args, "--json")
    assert report.returncode == 0, report.stderr
    second = json.loads(report.stdout)["compare"]
    names = load_bundle(small_bundle).class_names
    shifted = {
        path: names[(names.index(e["pipeline"]) + 1) % len(names)]
        for path, e in expected_results(small_bundle, labels, "onnxruntime").items()
    }
    assert {p["path"]: p["pipeline"] for p in second["predictions"]} == shifted
    agreement = second["agreement"]
    assert (agreement["pipeline"], agreement["full_image"], agreement["anchornet"]) == (0, 0, 1)  # AnchorNet alike
    table = anchor_edge("eval", small_bundle, "--data", root, *args)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    heading = lines.index(next(line for line in lines if line.startswith("compared")))
    assert lines[heading + 1].startswith(f"{small_bundle} (onnxruntime)")
    assert lines[heading + 2].startswith(f"{rolled_bundle} (onnxruntime)")
    assert lines[heading + 3].split()[4:] == ["0.0", "%", "0.0", "%", "100.0", "%"]
    widths = [len(line) for line in lines[heading : heading + 4]]
    assert widths[:3] == [widths[0]] * 3 and widths[3] == widths[0] - 14, "the columns line up under their headings"


def test_a_patch_size_missing_from_the_recorded_costs_leaves_the_counts_out_and_scores_every_image(
    small_bundle, labelled, tmp_path
):
    root, labels, _ = labelled
    twin = without_downstream_cost(small_bundle, tmp_path / "twin", "95")
    result = anchor_edge("eval", twin, "--data", root, "--backend", "onnxruntime", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == len(labels) and report["multiply_adds"]["pipeline_downstream_mean"] is None
    assert all(p["downstream_multiply_adds"] is None for p in report["predictions"])
    table = anchor_edge("eval", twin, "--data", root, "--backend", "onnxruntime", "--threads", "1")
    assert "downstream multiply-adds: not recorded per input size in bundle.json" in table.stdout


def test_a_second_bundle_that_cannot_open_stops_the_run_before_any_image_is_scored(
    small_bundle, labelled, tmp_path, monkeypatch, capsys
):
    from anchor_edge.cli import main
    from anchor_edge.evaluation import score

    monkeypatch.setattr(score, "evaluate", lambda *_, **__: pytest.fail("scored images before the second side opened"))
    args = ["eval", str(small_bundle), "--data", str(labelled[0]), "--backend", "onnxruntime"]
    assert main([*args, "--compare", str(tmp_path / "typo")]) == 1
    assert "typo" in capsys.readouterr().err


def test_a_second_bundle_with_its_classes_in_another_order_is_refused_before_any_image_is_scored(
    small_bundle, labelled, tmp_path, monkeypatch, capsys
):
    """Agreement counts class ids: bundles whose ids name other classes would read as disagreeing everywhere."""
    from anchor_edge.cli import main
    from anchor_edge.evaluation import score

    twin = shutil.copytree(small_bundle, tmp_path / "twin")  # bundle.json edited by hand: the model files stay
    manifest = json.loads((twin / "bundle.json").read_text())
    manifest["class_names"] = manifest["class_names"][::-1]
    (twin / "bundle.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(
        score, "evaluate", lambda *_, **__: pytest.fail("scored images before the classes were compared")
    )
    args = ["eval", str(small_bundle), "--data", str(labelled[0]), "--backend", "onnxruntime"]
    assert main([*args, "--compare", str(twin)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--compare {twin} has the classes" in error and "same order" in error


def test_a_chart_name_matplotlib_cannot_write_is_refused_before_any_image_is_scored(
    small_bundle, labelled, tmp_path, monkeypatch, capsys
):
    from anchor_edge.cli import main
    from anchor_edge.evaluation import score

    monkeypatch.setattr(score, "evaluate", lambda *_, **__: pytest.fail("scored images with a chart it cannot write"))
    args = ["eval", str(small_bundle), "--data", str(labelled[0]), "--backend", "onnxruntime"]
    assert main([*args, "--png", str(tmp_path / "eval.txt")]) == 1
    assert "--png" in capsys.readouterr().err and not (tmp_path / "eval.txt").exists()


def test_a_folder_of_unreadable_images_names_one_and_why(small_bundle, class_names, tmp_path):
    (tmp_path / class_names[0]).mkdir()
    (tmp_path / class_names[0] / "broken.jpg").write_bytes(b"not an image")
    result = anchor_edge("eval", small_bundle, "--data", tmp_path, "--backend", "onnxruntime")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "none of 1 image file(s) could be read" in result.stderr
    assert "broken.jpg" in result.stderr
