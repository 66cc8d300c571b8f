"""ONNX Runtime providers: the choice, and a provider that does not start is an error, never a silent CPU run.

A fake onnxruntime stands in for GPU builds this machine cannot have; the
real one runs the CPU case.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from anchor_edge import BackendError, Pipeline
from anchor_edge.backends import ort_providers
from anchor_edge.backends.ort import OrtRunner
from anchor_edge.backends.ort_providers import ProviderOptions, choose
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role


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
            module.last_session = self

        def get_providers(self):
            return self._active

        def get_inputs(self):
            return [Node("image")]

        def get_outputs(self):
            return [Node("logits")]

    module.SessionOptions, module.InferenceSession = SessionOptions, InferenceSession
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


def test_started_providers_run_with_the_cpu_behind_them(model, monkeypatch, tmp_path):
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    fake = fake_onnxruntime(gpu_build, starts=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    runner = OrtRunner(
        model, providers=["tensorrt", "cuda"], provider_options=ProviderOptions(tmp_path / "cache", True)
    )
    (tensorrt, options), cuda, cpu = fake.last_session.requested
    assert (tensorrt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert options["trt_engine_cache_enable"] is True and options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_path"].startswith(str(tmp_path / "cache"))
    assert runner.providers == ["tensorrt", "cuda"]


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
