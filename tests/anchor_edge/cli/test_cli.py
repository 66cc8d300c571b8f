"""The `anchor-edge` command, run as a subprocess on a real photo: output, exit codes, pictures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor_edge import Pipeline, cli
from anchor_edge.bundle import load_bundle
from anchor_edge.cli import checkout, visualize

REPO = Path(__file__).resolve().parents[3]


def anchor_edge(*args: object, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "anchor_edge", *(str(a) for a in args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def chelsea(photos, tmp_path_factory) -> Path:
    """scikit-image's photo of Chelsea the cat (451 x 300), written as a PNG file."""
    image = dict(photos)["chelsea"]
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def expected(small_bundle, chelsea):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipeline:
        return pipeline(chelsea)


def test_predict_prints_one_line_per_image(small_bundle, chelsea, expected):
    result = anchor_edge("predict", chelsea, chelsea, "--bundle", small_bundle)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    match = re.fullmatch(r"(.+): (.+) \(class (\d+)\) score ([\d.]+) branch B(\d+) patches (\d+)", lines[0])
    assert match, lines[0]
    path, label, class_id, score, branch, patches = match.groups()
    assert (path, label, int(class_id)) == (str(chelsea), expected.label, expected.class_id)
    assert float(score) == pytest.approx(expected.score, abs=5e-4)
    assert (int(branch), int(patches)) == (expected.branch, len(expected.boxes))


def test_predict_json_lines(small_bundle, chelsea, expected):
    result = anchor_edge("predict", chelsea, "--bundle", small_bundle, "--json", "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["image"] == str(chelsea)
    assert (record["class_id"], record["branch"]) == (expected.class_id, expected.branch)
    assert [p["box"] for p in record["patches"]] == expected.boxes.tolist()
    np.testing.assert_allclose([p["box_original"] for p in record["patches"]], expected.boxes_original, atol=0.01)


def test_predict_early_exit_zero_uses_one_patch(small_bundle, chelsea, expected):
    result = anchor_edge("predict", chelsea, "--bundle", small_bundle, "--json", "--early-exit", "0")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert [p["box"] for p in record["patches"]] == expected.boxes[:1].tolist()


def test_a_missing_image_fails_with_one_line_and_the_others_still_run(small_bundle, chelsea, tmp_path):
    missing = tmp_path / "no_such_photo.jpg"
    result = anchor_edge("predict", missing, "--bundle", small_bundle)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    mixed = anchor_edge("predict", chelsea, missing, "--bundle", small_bundle)
    assert mixed.returncode == 1
    assert len(mixed.stdout.splitlines()) == 1 and len(mixed.stderr.splitlines()) == 1


def test_a_tampered_bundle_fails_with_one_line(small_bundle, chelsea, tmp_path):
    copy = shutil.copytree(small_bundle, tmp_path / "bundle")
    with open(copy / "downstream.onnx", "ab") as model:
        model.write(b"\0")
    result = anchor_edge("predict", chelsea, "--bundle", copy)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "sha256" in result.stderr
    doctor = anchor_edge("doctor", "--bundle", copy)
    assert doctor.returncode == 1
    assert re.search(r"^FAIL bundle .*sha256", doctor.stdout, re.MULTILINE)
    assert len(doctor.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--no-such-option", "x.jpg"],
        ["predict"],
        ["predict", "x.jpg", "--early-exit", "-0.5"],
        ["teleport"],
        ["doctor", "extra"],
        ["batch", "--input", "photos/"],  # no --output
        ["batch", "--input", "x", "--output", "y", "--actors", "0"],
        ["serve", "--gpus-per-replica", "-1"],
        ["serve", "--batch-wait-ms", "nan"],
        ["serve", "--max-body-mb", "0"],
        ["serve", "--max-body-mb", "1e-9"],  # under one byte
        ["verify", "bundles/default", "--min-agreement", "95"],  # a share, not a percentage
        ["verify", "bundles/default", "--min-agreement", "nan"],
        ["predict", "x.jpg", "--every", "2"],  # stream flags on image files
        ["predict", "a.jpg", "b.jpg", "--batch-size", "8"],
        ["predict", "x.jpg", "--smooth", "ema"],
        [],
    ],
)
def test_usage_errors_exit_2(args):
    result = anchor_edge(*args)
    assert result.returncode == 2
    assert "usage: anchor-edge" in result.stderr


def test_doctor_reports_the_environment_and_the_bundle(small_bundle):
    import onnxruntime

    result = anchor_edge("doctor", "--bundle", small_bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout
    assert f"onnxruntime        {onnxruntime.__version__}" in report
    assert re.search(r"^ok   anchornet\.onnx .*inputs \[224\]", report, re.MULTILINE)
    assert re.search(r"^ok   downstream\.onnx .*inputs \[63, 95, 111\]", report, re.MULTILINE)
    from anchor_edge.backends.trt.environment import tensorrt_available

    available, reason = tensorrt_available()
    if available:
        assert re.search(r"^ok   tensorrt ", report, re.MULTILINE)
    else:
        assert re.search(r"^\s+tensorrt +not available \(", report, re.MULTILINE) and reason.split(";")[0] in report
    # the cost line: this bundle's AnchorNet against resnet18's full image (0.40 G of 1.82 G multiply-adds)
    bundle = load_bundle(small_bundle)
    share = bundle.anchornet.multiply_adds / bundle.downstream.multiply_adds[224]
    assert re.search(rf"^\s+cost +AnchorNet costs {share:.2f}x the downstream's full image", report, re.MULTILINE)
    assert re.search(r"^\s+openvino +(not installed|\S+, devices )", report, re.MULTILINE)
    assert re.search(r"^\s+auto backend +onnxruntime \(bundle has no TensorRT engines\)", report, re.MULTILINE)
    # engines are built from the bundle's own ONNX files (--bundle), never by a fresh export over it (--out)
    assert f"build them on the target: python export/to_trt.py --bundle {small_bundle}" in report
    assert re.search(rf"^\s+opencv +{re.escape(cv2.__version__)}, GStreamer (yes|no)$", report, re.MULTILINE)
    assert report.rstrip().endswith("can run here")


def test_doctor_without_a_bundle_says_how_to_make_one(tmp_path):
    result = anchor_edge("doctor", "--bundle", tmp_path / "none")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "export a bundle first" in line


@pytest.mark.slow
def test_export_writes_a_bundle_that_loads(small_models, tmp_path):
    _, anchornet_ckpt, downstream_ckpt = small_models
    out = tmp_path / "exported"
    result = anchor_edge(
        "export",
        "--anchornet",
        anchornet_ckpt,
        "--downstream",
        f"resnet18:{downstream_ckpt}",
        "--out",
        out,
        "--preset",
        "visual",
        "--timing-cache",
        tmp_path / "tensorrt.timing-cache",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'bundle.json'}" in result.stdout
    bundle = load_bundle(out)
    assert (bundle.num_classes, bundle.preset) == (10, "visual")


def test_export_usage_error_comes_from_the_scripts_parser():
    result = anchor_edge("export", "--pooling", "max")
    assert result.returncode == 2
    assert "usage: anchor-edge export" in result.stderr and "--pooling" in result.stderr


def test_bench_quick(small_bundle, tmp_path):
    if not (REPO / "benchmarks" / "latency.py").is_file():
        pytest.skip("benchmarks/latency.py is not in this checkout")
    report = tmp_path / "latency.json"
    result = anchor_edge(
        "bench",
        "--quick",
        "--bundle",
        small_bundle,
        "--batch-sizes",
        "1",
        "--threads",
        "1",
        "--json",
        report,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(report.read_text())
    ((label, info),) = written["bundles"].items()
    assert label == "small" and info["sha256"]["anchornet"] == load_bundle(small_bundle).anchornet.sha256
    ((batch),) = written["results"]
    assert batch["batch_size"] == 1 and batch["rounds"] >= 2
    ratio = batch["ratios"]["small"]
    items = batch["items"]
    p50 = {kind: items[f"small:{kind}"]["wall"]["p50"] for kind in ("pipeline", "full_image")}
    assert ratio["pipeline_over_full_p50"] == pytest.approx(p50["pipeline"] / p50["full_image"])
    assert f"pipeline/full image {ratio['pipeline_over_full_p50']:.3f} (p50)" in result.stdout


def test_checkout_commands_need_the_checkout(monkeypatch, capsys):
    monkeypatch.setitem(
        checkout.CHECKOUT_COMMANDS,
        "bench",
        ("benchmarks.no_such_script", "benchmarks/no_such_script.py", "pip install -e .[bench]"),
    )
    assert cli.main(["bench", "--quick"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("anchor-edge bench needs a source checkout with pip install -e .[bench]")


def test_save_vis_draws_the_boxes_at_boxes_original(small_bundle, chelsea, expected, tmp_path):
    result = anchor_edge("predict", chelsea, "--bundle", small_bundle, "--save-vis", tmp_path / "vis")
    assert result.returncode == 0, result.stderr
    picture = cv2.imread(str(tmp_path / "vis" / "chelsea.png"))
    photo = cv2.imread(str(chelsea))
    assert picture.shape[0] >= photo.shape[0] and picture.shape[1] > photo.shape[1]

    def box_colour_share(image: np.ndarray, box: np.ndarray) -> float:
        """Share of the box's four edge lines (pixel rows/columns of [x0, x1) x [y0, y1)) in the box colour."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        edges = [image[y0, x0:x1], image[y1 - 1, x0:x1], image[y0:y1, x0], image[y0:y1, x1 - 1]]
        pixels = np.concatenate(edges)
        return float(np.all(pixels == visualize.BOX_COLOUR, axis=1).mean())

    assert len(expected.boxes_original) > 1
    for rank, box in enumerate(expected.boxes_original, start=1):
        assert box_colour_share(picture, box) > 0.9, f"box {rank} at {box} is not drawn there"
        assert box_colour_share(photo, box) < 0.01, "the photo itself has the box colour there"
    shifted = expected.boxes_original[0] + [6, 6, 6, 6]
    assert box_colour_share(picture, shifted) < 0.9


def test_contributions_add_up_to_the_score_with_and_without_anchornets_vote(expected, small_bundle, chelsea):
    shares, vote_share = visualize.contributions(expected)
    assert shares.shape == (len(expected.boxes),) and vote_share == 0.0
    assert shares.sum() == pytest.approx(expected.score, rel=1e-5)
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, anchor_vote=2.0) as pipeline:
        voted = pipeline(chelsea)
    shares, vote_share = visualize.contributions(voted)
    assert len(voted.boxes) > 1 and vote_share > 0
    assert shares.sum() + vote_share == pytest.approx(voted.score, rel=1e-5)
    # by hand: each patch adds its probability for the class / patches, the vote 2 x B's; all over the scores' total
    c, n = voted.class_id, len(voted.boxes)
    total = voted.patch_probs.sum() / n + voted.anchor_scores.sum()
    assert vote_share == pytest.approx(voted.anchor_scores[c] / total, rel=1e-5)
    assert visualize.render(chelsea, voted).shape[1] > 0


def test_attention_maps_are_drawn_side_by_side_when_present(expected, chelsea):
    rng = np.random.default_rng(0)
    maps = tuple(rng.random((n, n)).astype(np.float32) for n in (21, 17, 15))
    plain = visualize.render(chelsea, expected)
    with_maps = visualize.render(chelsea, replace(expected, attention=maps))
    assert with_maps.shape[0] > plain.shape[0]
    row = with_maps[plain.shape[0] :]
    side = visualize.ATTENTION_SIDE
    jet = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_JET)[0]
    for index, attention in enumerate(maps):
        n = attention.shape[0]
        for flat, colour in ((attention.argmin(), jet[0]), (attention.argmax(), jet[1])):
            r, c = divmod(int(flat), n)
            # centre of cell (r, c) of an n x n map stretched to side x side; tiles sit left to right,
            # centred in height between their caption and the bottom margin
            y = (row.shape[0] - side) // 2 + int((r + 0.5) * side / n)
            x = index * side + int((c + 0.5) * side / n)
            assert row[y, x].tolist() == colour.tolist(), (index, r, c)


def test_predict_preset_changes_the_patches_as_the_pipeline_does(small_bundle, chelsea, capsys):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, preset="visual") as pipeline:
        visual = pipeline(chelsea)
    assert cli.main(["predict", str(chelsea), "--bundle", str(small_bundle), "--preset", "visual", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert [p["box"] for p in line["patches"]] == visual.boxes.tolist() and line["class_id"] == visual.class_id


def test_predict_on_tensorrt_without_engines_fails_with_the_reason(small_bundle, chelsea, capsys):
    assert cli.main(["predict", str(chelsea), "--bundle", str(small_bundle), "--backend", "tensorrt"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("anchor-edge:") and "no TensorRT engines" in line


def test_save_vis_keeps_both_pictures_of_two_images_with_one_file_name(small_bundle, photos, tmp_path, capsys):
    first, second = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png"
    for path, (_, image) in zip((first, second), photos[:2]):
        path.parent.mkdir()
        cv2.imwrite(str(path), image)
    out = tmp_path / "vis"
    assert cli.main(["predict", str(first), str(second), "--bundle", str(small_bundle), "--save-vis", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo-2.png", "photo.png"]
    assert not np.array_equal(cv2.imread(str(out / "photo.png")), cv2.imread(str(out / "photo-2.png")))


def test_doctor_checks_a_bundles_engines_against_this_machine(small_bundle, tmp_path, monkeypatch, capsys):
    from anchor_edge.backends.trt import runner as trt_backend
    from anchor_edge.bundle.schema import EngineRecord, Engines, manifest_text
    from anchor_edge.cli import doctor

    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    bundle = load_bundle(copy)
    machine = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    records = {
        role: EngineRecord(
            file=f"{role}.engine",
            sha256="0" * 64,
            profiles=(),
            **machine,
            onnx_sha256=bundle.manifest.models[role].sha256,
            precision=bundle.manifest.models[role].precision,
        )
        for role in ("anchornet", "downstream")
    }
    (copy / "bundle.json").write_text(manifest_text(replace(bundle.manifest, engines=Engines(**records))))
    monkeypatch.setattr(doctor, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "machine_identity", lambda: {**machine, "tensorrt": "11.4.0"})
    checks = {check.name: check for check in doctor.bundle_checks(copy)}
    for role in ("anchornet", "downstream"):
        assert checks[f"{role}.engine"].ok is False and "10.3.0" in checks[f"{role}.engine"].detail
        assert "rebuild it here" in checks[f"{role}.engine"].detail
    monkeypatch.setattr(trt_backend, "machine_identity", lambda: dict(machine))
    checks = {check.name: check for check in doctor.bundle_checks(copy)}
    assert checks["anchornet.engine"].ok and checks["downstream.engine"].detail == "fits this machine"
