"""Backend choice: "auto" says why it picked what it picked, and never silently runs a stale engine."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from anchor_edge import BackendError
from anchor_edge.backends import resolve_backend
from anchor_edge.backends import trt as trt_backend
from anchor_edge.bundle import load_bundle
from anchor_edge.schema import EngineRecord, Engines, Precision


@pytest.fixture()
def bundle_with_engines(small_bundle):
    bundle = load_bundle(small_bundle)
    record = EngineRecord(
        file="x.engine", sha256="0" * 64, profiles=(), tensorrt="10.3.0", gpu="Orin", compute_capability="8.7",
        onnx_sha256="0" * 64, precision=Precision.FP32,
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


def test_auto_skips_engines_built_elsewhere(bundle_with_engines, monkeypatch, caplog):
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(
        trt_backend, "engine_mismatches",
        lambda bundle, role: ["engine built with TensorRT 10.3.0, this machine has 11.4.0"] if role == "downstream" else [],
    )
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        assert resolve_backend(bundle_with_engines, "auto") == "onnxruntime"
    assert "TensorRT 10.3.0, this machine has 11.4.0" in caplog.text


def test_auto_takes_matching_engines(bundle_with_engines, monkeypatch):
    monkeypatch.setattr(trt_backend, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(trt_backend, "engine_mismatches", lambda bundle, role: [])
    assert resolve_backend(bundle_with_engines, "auto") == "tensorrt"


def test_explicit_choices(small_bundle, bundle_with_engines):
    assert resolve_backend(load_bundle(small_bundle), "onnxruntime") == "onnxruntime"
    assert resolve_backend(bundle_with_engines, "tensorrt") == "tensorrt"
    with pytest.raises(BackendError, match="no TensorRT engines"):
        resolve_backend(load_bundle(small_bundle), "tensorrt")
