"""Smoke tests of the benchmarks: they run, and what they write is complete and self-consistent.

No timed assertions: speed is measured by the benchmark, not here. The
checks are relations every honest report satisfies (p50 between min and
max, throughput = batch / mean, ratios = quotients of reported p50s, costs
that add up), plus hand-worked examples of the statistics and cost accounting.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from anchor_edge.bundle import load_bundle
from benchmarks import latency, torch_gpu
from benchmarks.costs import cost_accounting
from benchmarks.items import Choice
from benchmarks.measure import interleaved, paired_ratio, summarize
from tests.manifests import without_downstream_cost

ORDER = ("min", "p50", "p90", "p99", "max")


def test_interleaved_runs_items_in_rounds_on_the_same_batch():
    calls = []
    items = {name: (lambda batch, name=name: calls.append((name, batch)) or {"part": 1.0}) for name in "AB"}
    samples = interleaved(items, ["b0", "b1"], warmup_s=0.0, seconds=None, iterations=3)
    assert calls == [("A", "b0"), ("B", "b0"), ("B", "b1"), ("A", "b1"), ("A", "b0"), ("B", "b0")]
    assert [len(samples[n]["wall"]) for n in "AB"] == [3, 3] and samples["A"]["part"] == [1.0, 1.0, 1.0]


def test_a_timed_measurement_ends_on_a_whole_pass_over_the_batches():
    """Every batch timed equally often, whatever the clock: the mix of images is the one chosen."""
    calls = []
    samples = interleaved(
        {"A": lambda batch: calls.append(batch) or {}}, ["b0", "b1", "b2"], warmup_s=0.0, seconds=0.0, iterations=None
    )
    assert calls == ["b0", "b1", "b2"] and len(samples["A"]["wall"]) == 3


def test_summary_statistics_on_a_hand_example():
    stats = summarize([4.0, 1.0, 3.0, 2.0])
    # mean 2.5; sample std sqrt(((1.5)^2 + (0.5)^2) * 2 / 3) = sqrt(5/3); linear-interpolated p90 = 3 + 0.7.
    assert stats["n"] == 4 and stats["mean"] == 2.5 and stats["min"] == 1.0 and stats["max"] == 4.0
    assert stats["std"] == pytest.approx((5 / 3) ** 0.5) and stats["p50"] == 2.5 and stats["p90"] == pytest.approx(3.7)
    assert paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 3.0]) == 2.0  # median of 2, 3, 1


def test_cost_accounting_on_hand_counted_choices(small_bundle):
    bundle = load_bundle(small_bundle)
    macs = bundle.downstream.multiply_adds
    costs = cost_accounting(bundle, [Choice(63, 2), Choice(63, 4), Choice(111, 1)])
    assert costs["images_per_branch"] == {"63": 2, "111": 1}
    assert costs["patches_per_image"]["mean"] == pytest.approx(7 / 3)
    assert costs["patches_per_image"]["per_branch_mean"] == {"63": 3.0, "111": 1.0}
    assert costs["patches_per_image"]["histogram"] == {"63": {"2": 1, "4": 1}, "111": {"1": 1}}
    patches = (6 * macs[63] + macs[111]) / 3
    anchornet = bundle.anchornet.multiply_adds
    assert costs["multiply_adds"]["patches_mean"] == pytest.approx(patches)
    assert costs["multiply_adds"]["pipeline_over_full"] == pytest.approx((anchornet + patches) / macs[224])
    assert costs["multiply_adds"]["resized_mean"] == pytest.approx((2 * macs[63] + macs[111]) / 3)


def test_quick_run_writes_a_complete_consistent_report(small_bundle, tmp_path, capsys):
    out, png = tmp_path / "latency.json", tmp_path / "latency.png"
    argv = [
        "--bundle",
        str(small_bundle),
        "--bundle",
        str(small_bundle),
        "--quick",
        "--iterations",
        "2",
        "--batch-sizes",
        "1",
        "2",
        "--threads",
        "1",
        "--json",
        str(out),
        "--png",
        str(png),
        "--note",
        "smoke test",
    ]
    assert latency.main(argv) == 0
    assert "pipeline/full image" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = report["environment"]
    assert env["note"] == "smoke test" and env["cpu_cores"] >= 1 and env["versions"]["onnxruntime"]
    bundle = load_bundle(small_bundle)
    labels = list(report["bundles"])
    assert labels == ["small", "small'"]
    for info in report["bundles"].values():
        assert info["sha256"] == {"anchornet": bundle.anchornet.sha256, "downstream": bundle.downstream.sha256}
        assert info["backend"] == "onnxruntime:cpu" and info["downstream_weights"].startswith("checkpoint:")
        costs = info["costs"]
        assert sum(costs["images_per_branch"].values()) == costs["images"] == len(report["settings"]["images"])
        histogram = costs["patches_per_image"]["histogram"]
        assert {size: sum(h.values()) for size, h in histogram.items()} == costs["images_per_branch"]
        total = sum(int(n) * c for h in histogram.values() for n, c in h.items())
        assert costs["patches_per_image"]["mean"] == pytest.approx(total / costs["images"])
        macs = costs["multiply_adds"]
        assert macs["pipeline_mean"] == pytest.approx(macs["anchornet"] + macs["patches_mean"])
    assert [r["batch_size"] for r in report["results"]] == [1, 2]
    for result in report["results"]:
        assert set(result["items"]) == {
            f"{label}:{kind}" for label in labels for kind in ("pipeline", "full_image", "resized")
        }
        for item in result["items"].values():
            wall = item["wall"]
            assert [wall[k] for k in ORDER] == sorted(wall[k] for k in ORDER) and wall["min"] <= wall["mean"] <= wall[
                "max"
            ]
            assert wall["n"] == result["rounds"] >= 2 and wall["std"] >= 0
            assert item["throughput_images_per_s"] == pytest.approx(result["batch_size"] * 1e3 / wall["mean"])
            for stats in item["stages"].values():
                assert stats["min"] <= stats["p50"] <= stats["max"]
        pipeline_stages = result["items"]["small:pipeline"]["stages"]
        assert {"preprocess", "anchornet", "decision+lsp", "crop+grouping", "aggregation"} <= set(pipeline_stages)
        for label in labels:
            ratio = result["ratios"][label]
            assert all(value > 0 for value in ratio.values())
            p50 = {kind: result["items"][f"{label}:{kind}"]["wall"]["p50"] for kind in ("pipeline", "full_image")}
            assert ratio["pipeline_over_full_p50"] == pytest.approx(p50["pipeline"] / p50["full_image"])
            host = result["host_overhead"][label]
            assert 0 < host["share_of_pipeline_median"] < 1 and host["ms"]["min"] > 0
            assert host["model_anchornet_ms"]["max"] < result["items"][f"{label}:pipeline"]["wall"]["max"]
        assert list(result["pipeline_versus_first_bundle_paired"]) == labels[1:]
        assert all(v > 0 for v in result["pipeline_versus_first_bundle_paired"]["small'"].values())


def test_video_mode_reports_stream_figures_per_batch_size(small_bundle, photos, tmp_path, capsys):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (256, 192))
    for _, image in photos[:5]:
        writer.write(cv2.resize(image, (256, 192)))
    writer.release()
    out = tmp_path / "stream.json"
    argv = [
        "--bundle",
        str(small_bundle),
        "--video",
        str(video),
        "--batch-sizes",
        "1",
        "4",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    assert latency.main(argv) == 0
    assert "stream over the video" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["results"] == []  # the photo benchmark does not run in video mode
    assert report["settings"]["warmup_s"] is None and report["settings"]["seconds"] is None
    figures = report["stream"]["bundles"]["small"]
    assert set(figures) == {"1", "4"}
    for stats in figures.values():
        assert stats["frames"] == 5 and stats["dropped"] == 0 and stats["errors"] == 0
        assert stats["frames_per_s"] == pytest.approx(5 / stats["seconds"], rel=1e-2)
        assert 0 < stats["latency_ms_p50"] <= stats["latency_ms_p99"]


def test_a_bundle_without_the_full_images_cost_is_refused_in_one_line_before_timing(small_bundle, tmp_path, capsys):
    # The report's savings and costs count the full image: a hand-edited bundle.json without it is refused up front.
    twin = without_downstream_cost(small_bundle, tmp_path / "twin", "224")
    assert latency.main(["--bundle", str(twin), "--quick", "--iterations", "2", "--batch-sizes", "1"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no downstream multiply-adds for size(s) [224]" in error


def test_bad_budget_is_a_usage_error(small_bundle):
    assert latency.main(["--bundle", str(small_bundle), "--iterations", "1"]) == 2


@pytest.mark.parametrize(
    "flag", [["--seconds", "5"], ["--iterations", "3"], ["--warmup", "1"], ["--quick"], ["--png", "x.png"]]
)
def test_video_refuses_the_photo_timing_flags(small_bundle, tmp_path, capsys, flag):
    # Refused before any bundle is opened: the video need not exist for the usage error.
    assert latency.main(["--bundle", str(small_bundle), "--video", str(tmp_path / "clip.mp4"), *flag]) == 2
    assert f"{flag[0]} does not apply with --video" in capsys.readouterr().err


def test_torch_method_runs_on_cpu(tmp_path):
    out = tmp_path / "torch.json"
    assert (
        torch_gpu.main(
            [
                "--device",
                "cpu",
                "--quick",
                "--batch-sizes",
                "1",
                "--preset",
                "visual",
                "--num-classes",
                "10",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["label"] == "PyTorch CUDA, not TensorRT" and report["device"] == "cpu"
    result = report["results"][0]
    method = result["method"]
    # each round's wall time holds its stages (AnchorNet, host decision + LSP, patches), so the least wall time
    # is at least the sum of the stages' least times
    stages_min = sum(method[stage]["min"] for stage in ("anchornet", "decision+lsp", "patches"))
    assert method["wall"]["min"] >= 0.99 * stages_min and result["method_over_full_paired"] > 0
    patches = method["patches_per_image"]
    assert 1 <= patches["min"] <= patches["max"] <= 5  # the visual preset takes at most 5, 3 or 2 patches
    assert result["throughput_images_per_s"]["method"] == pytest.approx(1e3 / method["wall"]["mean"])


def test_a_digits_bundle_is_timed_on_the_digits_test_images_and_others_on_photos(tmp_path, capsys):
    from benchmarks.images import DIGITS_IMAGES, default_images, load_images
    from export.data.digits import make_sample

    assert default_images([str(d) for d in range(10)]) == "digits"
    assert default_images(["cat", "dog"]) == "photos" and default_images([f"class_{i}" for i in range(10)]) == "photos"
    digits = load_images("digits")
    assert len(digits) == DIGITS_IMAGES
    assert np.array_equal(digits[5][1], make_sample("test", 5, 0).image)  # the accuracy benchmark's test images
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "one.png"), digits[0][1])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "torn.png").write_bytes(b"\x89PNG not really")
    assert [name for name, _ in load_images(str(tmp_path))] == ["one.png"]
    said = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in said and "torn.png" in said
    with pytest.raises(OSError, match="no readable images"):
        load_images(str(tmp_path / "missing"))


def test_the_latency_report_names_the_images_it_timed(small_bundle, tmp_path):
    out = tmp_path / "latency.json"
    argv = [
        "--bundle",
        str(small_bundle),
        "--quick",
        "--iterations",
        "2",
        "--batch-sizes",
        "1",
        "--threads",
        "1",
        "--images",
        "digits",
        "--json",
        str(out),
    ]
    assert latency.main(argv) == 0
    names = json.loads(out.read_text())["settings"]["images"]
    assert names == [f"digits test {i}" for i in range(64)]
