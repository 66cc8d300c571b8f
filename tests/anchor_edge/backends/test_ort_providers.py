"""ONNX Runtime providers: the choice, and a provider that does not start is an error, never a silent CPU run.

A fake onnxruntime stands in for GPU builds this machine cannot have; the
real one runs the CPU case.
"""

from __future__ import annotations

import shutil
import sys
import types

import numpy as np
import pytest

from anchor_edge import BackendError, InputError, Pipeline
from anchor_edge.backends import OnnxRuntimeOptions, ort_providers, ort_tensorrt
from anchor_edge.backends.ort import OrtRunner
from anchor_edge.backends.ort_providers import ProviderOptions, choose
from anchor_edge.backends.ort_tensorrt import TensorrtMachine, TensorrtProvider, tensorrt_provider_options
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import Profile

MACHINE = TensorrtMachine(onnxruntime="0.0-fake", tensorrt="10.3.0", gpu="NVIDIA Jetson Orin", compute_capability="8.7")


def fake_onnxruntime(available: list[str], starts: list[str]) -> types.ModuleType:
    """An onnxruntime whose build offers `available` and whose sessions actually start only `starts` (+ CPU)."""
    module = types.ModuleType("onnxruntime")
    module.__version__ = "0.0-fake"
    module.get_available_providers = lambda: list(available)
    module.GraphOptimizationLevel = types.SimpleNamespace(ORT_ENABLE_ALL=99)
    module.ExecutionMode = types.SimpleNamespace(ORT_SEQUENTIAL=0)

    class SessionOptions:
        def add_session_config_entry(self, key, value):
            pass

    class Node:
        def __init__(self, name):
            self.name, self.shape, self.type = name, ["batch", 3, "h", "w"], "tensor(float)"

    class InferenceSession:
        def __init__(self, path, options, providers):
            self.requested = providers
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            self._active = [n for n in names if n in starts or n == "CPUExecutionProvider"]
            self.batches = []
            module.last_session = self
            module.sessions.append(self)

        def run(self, output_names, feeds):
            """Each image's mean as its one logit, so a split batch shows whether it was joined back in order."""
            image = feeds["image"]
            self.batches.append(len(image))
            return [image.reshape(len(image), -1).mean(axis=1, keepdims=True) for _ in output_names]

        def get_providers(self):
            return self._active

        def get_inputs(self):
            return [Node("image")]

        def get_outputs(self):
            return [Node("logits")]

    module.SessionOptions, module.InferenceSession = SessionOptions, InferenceSession
    module.sessions = []
    return module


@pytest.fixture()
def model(small_bundle):
    return load_bundle(small_bundle).path(Role.DOWNSTREAM)


def test_a_requested_provider_that_does_not_start_is_an_error_naming_what_to_install(model, monkeypatch):
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(gpu_build, starts=[]))  # CUDA libraries missing
    with pytest.raises(
        BackendError, match=r"did not start CUDAExecutionProvider .*active: CPUExecutionProvider.*onnxruntime-gpu"
    ):
        OrtRunner(model, providers="cuda")


def test_a_provider_the_build_lacks_is_refused_before_loading(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(["CPUExecutionProvider"], starts=[]))
    with pytest.raises(BackendError, match=r"has no OpenVINOExecutionProvider.*pip install onnxruntime-openvino"):
        OrtRunner(model, providers=["openvino"])
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider"):
        OrtRunner(model, providers="rocm")


def test_started_providers_run_with_the_cpu_behind_them_and_tensorrt_set_up_from_the_bundle(
    small_bundle, monkeypatch, tmp_path
):
    """Each model's TensorRT provider gets the bundle's options, and its engine cache folder is made in the bundle."""
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    fake = fake_onnxruntime(gpu_build, starts=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    monkeypatch.setattr(ort_tensorrt, "detect_machine", lambda: MACHINE)
    shutil.copytree(small_bundle, tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    runners = OnnxRuntimeOptions(providers=("tensorrt", "cuda")).open(bundle)
    for role, runner, session in zip(Role, runners, fake.sessions):
        (tensorrt, options), cuda, cpu = session.requested
        assert (tensorrt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
        assert options == tensorrt_provider_options(bundle, role, MACHINE)
        assert options["trt_engine_cache_path"].startswith(str(tmp_path / "bundle" / "ort-tensorrt" / role.value))
        assert (tmp_path / "bundle" / "ort-tensorrt").is_dir() and runner.providers == ["tensorrt", "cuda"]
    assert len(runners[1].profiles) == 4 and runners[0].profiles[0].max == (8, 3, 224, 224)


def test_providers_other_than_tensorrt_get_no_profiles_and_need_no_tensorrt(model, monkeypatch):
    gpu_build = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(gpu_build, starts=["CUDAExecutionProvider"]))
    runner = OrtRunner(model, providers="cuda", tensorrt=lambda: pytest.fail("the TensorRT setup was read"))
    assert runner.profiles == () and runner.run({"image": np.zeros((40, 3, 63, 63), np.float32)})


def test_the_tensorrt_provider_without_a_bundle_is_refused_saying_how_to_open_it(model, monkeypatch):
    gpu_build = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(gpu_build, starts=["TensorrtExecutionProvider"]))
    with pytest.raises(InputError, match=r"opened without one.*Pipeline.from_bundle\(path, backend='onnxruntime'"):
        OrtRunner(model, providers="tensorrt")


def patch_profiles(max_patches: int) -> TensorrtProvider:
    """The downstream's four profiles (63, 95, 111, 224), `max_patches` at most per call."""
    sizes = (63, 95, 111, 224)
    return TensorrtProvider(
        {}, tuple(Profile("image", (1, 3, k, k), (1, 3, k, k), (max_patches, 3, k, k)) for k in sizes)
    )


def test_a_batch_above_its_profiles_maximum_is_split_and_joined_in_order(model, monkeypatch):
    gpu_build = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    fake = fake_onnxruntime(gpu_build, starts=["TensorrtExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    runner = OrtRunner(model, providers="tensorrt", tensorrt=lambda: patch_profiles(32))
    patches = np.arange(70, dtype=np.float32)[:, None, None, None] * np.ones((70, 3, 95, 95), np.float32)
    logits = runner.run({"image": patches})["logits"]
    assert fake.last_session.batches == [32, 32, 6]
    np.testing.assert_array_equal(logits[:, 0], np.arange(70, dtype=np.float32))
    runner.run({"image": patches[:32]})
    assert fake.last_session.batches[3:] == [32]


def test_a_size_no_profile_takes_is_refused_before_running(model, monkeypatch):
    gpu_build = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    fake = fake_onnxruntime(gpu_build, starts=["TensorrtExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    runner = OrtRunner(model, providers="tensorrt", tensorrt=lambda: patch_profiles(32))
    with pytest.raises(BackendError, match=r"TensorRT provider has no optimization profile for shape \(2, 3, 80, 80\)"):
        runner.run({"image": np.zeros((2, 3, 80, 80), np.float32)})
    assert fake.last_session.batches == []


@pytest.mark.parametrize("providers", ["cpu", "auto", ("cuda", "cpu")])
def test_a_tensorrt_cache_without_the_tensorrt_provider_named_is_refused(providers, tmp_path):
    with pytest.raises(InputError, match=r"tensorrt_cache applies only to ONNX Runtime's TensorRT provider"):
        OnnxRuntimeOptions(providers=providers, provider_options=ProviderOptions(tensorrt_cache=tmp_path))


def test_a_cache_folder_that_cannot_be_made_is_a_backend_error_naming_the_option(small_bundle, monkeypatch, tmp_path):
    monkeypatch.setattr(ort_tensorrt, "detect_machine", lambda: MACHINE)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(BackendError, match=r"cannot create ONNX Runtime's TensorRT engine cache.*tensorrt_cache="):
        ort_tensorrt.tensorrt_provider(load_bundle(small_bundle), Role.ANCHORNET, ProviderOptions(tmp_path / "a-file"))


def test_auto_takes_the_first_provider_of_its_order_and_logs_why(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert choose("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["cuda"]
        assert choose("auto", ["OpenVINOExecutionProvider", "CPUExecutionProvider"]) == ["openvino"]
        assert choose("auto", ["CPUExecutionProvider"]) == ["cpu"]
    assert "providers auto -> cuda" in caplog.text and ort_providers.AUTO_ORDER[0] == "tensorrt"


def test_the_real_cpu_provider_runs_and_reports_itself(small_bundle, photos):
    import onnxruntime

    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, providers="auto") as pipe:
        if not set(onnxruntime.get_available_providers()) & {
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
            "OpenVINOExecutionProvider",
        }:
            assert pipe.anchornet.providers == pipe.downstream.providers == ["cpu"]  # a CPU-only build, as in CI
        assert np.isfinite(pipe(photos[0][1]).patch_probs).all()
