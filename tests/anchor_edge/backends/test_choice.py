"""Backend choice: "auto" says why it picked what it picked, and never silently runs a stale engine."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from anchor_edge import BackendError
from anchor_edge.backends import resolve_backend
from anchor_edge.backends.trt import runner as trt_backend
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Precision
from anchor_edge.bundle.schema import EngineRecord, Engines


@pytest.fixture()
def bundle_with_engines(small_bundle):
    bundle = load_bundle(small_bundle)
    record = EngineRecord(
        file="x.engine",
        sha256="0" * 64,
        profiles=(),
        tensorrt="10.3.0",
        gpu="Orin",
        compute_capability="8.7",
        onnx_sha256="0" * 64,
        precision=Precision.FP32,
    )
    engines = Engines(anchornet=record, downstream=record)
    return dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, engines=engines))


def test_auto_without_engines_is_onnxruntime(small_bundle, caplog):
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert resolve_backend(load_bundle(small_bundle), "auto") == "onnxruntime"
    assert "bundle has no TensorRT engines" in caplog.text


def test_auto_without_tensorrt_says_why(bundle_with_engines, monkeypatch, caplog):
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (False, "tensorrt not installed"))
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert resolve_backend(bundle_with_engines, "auto") == "onnxruntime"
    assert "tensorrt not installed" in caplog.text


ORIN = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}


@pytest.fixture()
def bundle_built_on_orin(small_bundle):
    """The small bundle with engine records of an Orin with TensorRT 10.3.0, for its very ONNX files."""
    bundle = load_bundle(small_bundle)
    records = {
        role: EngineRecord(
            file=f"{role}.engine",
            sha256="0" * 64,
            profiles=(),
            onnx_sha256=bundle.manifest.models[role].sha256,
            precision=bundle.manifest.models[role].precision,
            **ORIN,
        )
        for role in ("anchornet", "downstream")
    }
    manifest = dataclasses.replace(bundle.manifest, engines=Engines(**records))
    return dataclasses.replace(bundle, manifest=manifest)


def test_auto_takes_engines_whose_identity_matches_this_machine(bundle_built_on_orin, monkeypatch):
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "machine_identity", lambda: dict(ORIN))
    assert resolve_backend(bundle_built_on_orin, "auto") == "tensorrt"


@pytest.mark.parametrize(
    "machine, reason",
    [
        ({**ORIN, "tensorrt": "11.4.0"}, "TensorRT 10.3.0, this machine has 11.4.0"),
        ({**ORIN, "gpu": "RTX 4090", "compute_capability": "8.9"}, "Orin"),
    ],
)
def test_auto_skips_engines_built_elsewhere(bundle_built_on_orin, monkeypatch, caplog, machine, reason):
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "machine_identity", lambda: dict(machine))
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert resolve_backend(bundle_built_on_orin, "auto") == "onnxruntime"
    assert reason in caplog.text


def test_auto_skips_engines_of_other_onnx_files(bundle_built_on_orin, monkeypatch, caplog):
    record = bundle_built_on_orin.manifest.engines.downstream
    engines = dataclasses.replace(
        bundle_built_on_orin.manifest.engines, downstream=dataclasses.replace(record, onnx_sha256="f" * 64)
    )
    stale = dataclasses.replace(
        bundle_built_on_orin, manifest=dataclasses.replace(bundle_built_on_orin.manifest, engines=engines)
    )
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "machine_identity", lambda: dict(ORIN))
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert resolve_backend(stale, "auto") == "onnxruntime"
    assert "onnx" in caplog.text.lower()


def test_explicit_choices(small_bundle, bundle_with_engines):
    assert resolve_backend(load_bundle(small_bundle), "onnxruntime") == "onnxruntime"
    assert resolve_backend(bundle_with_engines, "tensorrt") == "tensorrt"
    with pytest.raises(BackendError, match="no TensorRT engines"):
        resolve_backend(load_bundle(small_bundle), "tensorrt")
