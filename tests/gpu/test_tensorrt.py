"""TensorRT engines built from the small bundle agree with ONNX Runtime on the same inputs.

Needs TensorRT, pycuda and a CUDA GPU; elsewhere every test is skipped with
the reason `tensorrt_available()` gives. Building both engines takes a minute
or two, once per module. Batches above a profile's maximum exercise the
runner's chunking; 63/95/111/224 exercise the downstream's profile choice.
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from anchor_edge.backends.ort import OrtRunner
from anchor_edge.backends.trt.runner import TrtRunner, engine_mismatches, machine_identity, tensorrt_available
from anchor_edge.bundle import load_bundle, sha256_of
from anchor_edge.bundle.choices import Role
from anchor_edge.errors import BackendError
from anchor_edge.method.lsp import PRESETS

AVAILABLE, REASON = tensorrt_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not AVAILABLE, reason=f"TensorRT backend unavailable: {REASON}")]

MAX_BATCH, MAX_PATCHES = 4, 8
# Largest |TensorRT - ONNX Runtime| allowed on any output, by the bundle's precision.
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}


@pytest.fixture(scope="module")
def trt_bundle(small_bundle, tmp_path_factory):
    """A copy of the small bundle with both engines built and recorded in its bundle.json."""
    from export.engines.build import build_engines, record_engines

    root = tmp_path_factory.mktemp("trt") / "bundle"
    shutil.copytree(small_bundle, root)
    records = build_engines(
        root,
        max_batch=MAX_BATCH,
        max_patches=MAX_PATCHES,
        preset="accurate",
        workspace_bytes=1 << 30,
        timing_cache=root.parent / "tensorrt.timing-cache",
    )
    record_engines(root, records)
    return load_bundle(root)


@pytest.fixture(scope="module")
def runners(trt_bundle):
    """(TensorRT, ONNX Runtime) runner pairs per role."""
    pairs = {role.value: (TrtRunner.from_bundle(trt_bundle, role), OrtRunner(trt_bundle.path(role))) for role in Role}
    yield pairs
    for trt_runner, ort_runner in pairs.values():
        trt_runner.close()
        ort_runner.close()


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def assert_matches(trt_out: dict, ort_out: dict, precision: str) -> None:
    if precision not in TOLERANCE:
        pytest.skip(f"no element-wise parity bound for {precision} engines")
    assert trt_out.keys() == ort_out.keys()
    for name, expected in ort_out.items():
        assert trt_out[name].shape == expected.shape, name
        worst = float(np.max(np.abs(trt_out[name].astype(np.float64) - expected)))
        assert worst <= TOLERANCE[precision], f"{name}: max |TensorRT - ONNX Runtime| = {worst:.2e}"


def test_engine_records_describe_what_was_built(trt_bundle):
    engines = trt_bundle.manifest.engines
    anchornet, downstream = engines.anchornet, engines.downstream
    assert anchornet is not None and downstream is not None
    assert [p.max for p in anchornet.profiles] == [(MAX_BATCH, 3, 224, 224)]
    assert [p.min[2] for p in downstream.profiles] == [63, 95, 111, 224]
    assert [p.max[0] for p in downstream.profiles] == [MAX_PATCHES] * 3 + [MAX_BATCH]
    expected_opt = [min(PRESETS["accurate"][k].max_patches, MAX_PATCHES) for k in (63, 95, 111)] + [1]
    assert [p.opt[0] for p in downstream.profiles] == expected_opt
    for role, record in ((Role.ANCHORNET, anchornet), (Role.DOWNSTREAM, downstream)):
        assert sha256_of(trt_bundle.root / record.file) == record.sha256
        assert record.onnx_sha256 == trt_bundle.manifest.models[role].sha256
        assert {k: getattr(record, k) for k in ("tensorrt", "gpu", "compute_capability")} == machine_identity()
        assert engine_mismatches(trt_bundle, role) == []


@pytest.mark.parametrize("size", [63, 95, 111, 224])
def test_downstream_matches_onnxruntime_at_every_size_and_batch(runners, trt_bundle, size):
    trt_runner, ort_runner = runners["downstream"]
    limit = MAX_BATCH if size == 224 else MAX_PATCHES
    for batch in (1, limit, 2 * limit + 3):  # the last one is split into 3 chunks
        feeds = {"image": images(batch, size, seed=batch)}
        assert_matches(trt_runner.run(feeds), ort_runner.run(feeds), trt_bundle.downstream.precision.value)


def test_anchornet_matches_onnxruntime_on_every_output(runners, trt_bundle):
    trt_runner, ort_runner = runners["anchornet"]
    for batch in (1, MAX_BATCH, MAX_BATCH + 3):
        feeds = {"image": images(batch, 224, seed=batch)}
        assert_matches(trt_runner.run(feeds), ort_runner.run(feeds), trt_bundle.anchornet.precision.value)


def test_the_whole_pipeline_on_real_photos_matches_onnxruntime(trt_bundle, photos):
    from anchor_edge import Pipeline

    images = [image for _, image in photos]
    with (
        Pipeline.from_bundle(trt_bundle.root, backend="tensorrt") as on_gpu,
        Pipeline.from_bundle(trt_bundle.root, backend="onnxruntime") as on_cpu,
    ):
        for got, expected in zip(on_gpu.predict_batch(images), on_cpu.predict_batch(images)):
            assert (got.class_id, got.branch, got.anchor_class) == (
                expected.class_id,
                expected.branch,
                expected.anchor_class,
            )
            assert got.boxes.tolist() == expected.boxes.tolist()
            np.testing.assert_allclose(got.branch_probs, expected.branch_probs, atol=TOLERANCE["fp32"])
            np.testing.assert_allclose(got.patch_probs, expected.patch_probs, atol=TOLERANCE["fp32"])


@pytest.mark.parametrize("precision, target, floor", [("fp16", "tensorrt", 0.95), ("int8", "tensorrt", 0.75)])
def test_reduced_precision_engines_agree_with_fp32_on_real_photos(
    small_bundle, photos, tmp_path, precision, target, floor
):
    """FP16 and INT8 (symmetric, --int8-target tensorrt) engines: top-1 agreement with the FP32 pipeline
    on the photos."""
    from anchor_edge import Pipeline
    from export.engines.build import build_engines, record_engines
    from export.precision.calibration import ImageSet
    from export.precision.convert import PrecisionOptions, convert_bundle
    from export.precision.flag import parse_precision

    root = tmp_path / "bundle"
    shutil.copytree(small_bundle, root)
    options = PrecisionOptions(models=parse_precision(precision), int8_target=target, min_agreement=0.0)
    convert_bundle(root, options, held_out=ImageSet(photos[:4], "four bundled photos"))
    records = build_engines(
        root,
        max_batch=MAX_BATCH,
        max_patches=MAX_PATCHES,
        preset="accurate",
        workspace_bytes=1 << 30,
        timing_cache=tmp_path / "tensorrt.timing-cache",
    )
    record_engines(root, records)
    images = [image for _, image in photos]
    with (
        Pipeline.from_bundle(root, backend="tensorrt") as reduced,
        Pipeline.from_bundle(small_bundle, backend="onnxruntime") as fp32,
    ):
        agreement = np.mean(
            [a.class_id == b.class_id for a, b in zip(reduced.predict_batch(images), fp32.predict_batch(images))]
        )
    assert agreement >= floor, f"{precision} engines agree with FP32 on {agreement:.0%} of the photos"


def test_timings_split_the_call_into_copies_and_compute(runners):
    trt_runner, _ = runners["downstream"]
    trt_runner.run({"image": images(2 * MAX_PATCHES + 1, 95)})
    timings = trt_runner.last_timings
    assert set(timings) == {"h2d_ms", "compute_ms", "d2h_ms"}
    assert all(value >= 0 for value in timings.values()) and timings["compute_ms"] > 0


def test_empty_batch_gives_empty_outputs(runners, trt_bundle):
    trt_runner, _ = runners["downstream"]
    logits = trt_runner.run({"image": images(0, 63)})["logits"]
    assert logits.shape == (0, trt_bundle.num_classes)


def test_unplanned_size_is_refused_with_the_sizes_it_takes(runners):
    trt_runner, _ = runners["downstream"]
    with pytest.raises(BackendError, match="100, 100.*63x63"):
        trt_runner.run({"image": images(1, 100)})


def test_calls_from_several_threads_are_serialised_correctly(runners):
    """Each thread pushes the CUDA context itself; results equal the single-threaded ones."""
    trt_runner, _ = runners["downstream"]
    jobs = [(size, batch) for size in (63, 95, 111, 224) for batch in (1, 5)]
    expected = {job: trt_runner.run({"image": images(job[1], job[0], seed=7)})["logits"] for job in jobs}
    results, errors = {}, []

    def work(job):
        try:
            results[job] = trt_runner.run({"image": images(job[1], job[0], seed=7)})["logits"]
        except Exception as exc:  # surfaced below: a thread cannot fail the test directly
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for job in jobs:
        np.testing.assert_allclose(results[job], expected[job], rtol=0, atol=1e-6)


def test_engine_from_another_tensorrt_is_refused_naming_both_versions(trt_bundle, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(trt_bundle.root, stale)
    manifest = json.loads((stale / "bundle.json").read_text(encoding="utf-8"))
    manifest["engines"]["downstream"]["tensorrt"] = "0.0.1"
    (stale / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BackendError) as caught:
        TrtRunner.from_bundle(load_bundle(stale), "downstream")
    message = str(caught.value)
    assert "TensorRT 0.0.1" in message and machine_identity()["tensorrt"] in message


def test_closed_runner_refuses_to_run(trt_bundle):
    runner = TrtRunner.from_bundle(trt_bundle, "anchornet")
    runner.close()
    runner.close()  # closing twice is harmless
    with pytest.raises(BackendError, match="closed"):
        runner.run({"image": images(1, 224)})
