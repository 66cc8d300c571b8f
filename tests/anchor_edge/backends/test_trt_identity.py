"""Engine identity: a stale engine is named with both sides of every difference."""

import pytest

from anchor_edge.backends.trt.identity import engine_entry, engine_identity, identity_mismatches
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import Manifest
from anchor_edge.errors import BundleError
from tests.manifests import bundle_json

BUILT = engine_identity(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", onnx_sha256="a" * 64, precision="fp16")


def test_same_machine_and_model_has_no_mismatch():
    assert identity_mismatches(BUILT, dict(BUILT)) == []


def test_each_difference_names_both_sides():
    here = engine_identity(
        tensorrt="11.4.0", gpu="NVIDIA H200", compute_capability="9.0", onnx_sha256="b" * 64, precision="fp32"
    )
    assert identity_mismatches(BUILT, here) == [
        "engine built with TensorRT 10.3.0, this machine has 11.4.0",
        "engine built on GPU 'Orin', this machine has 'NVIDIA H200'",
        "engine built for compute capability 8.7, this machine has 9.0",
        f"engine built from ONNX sha256 {'a' * 12}..., the bundle's ONNX model is {'b' * 12}...",
        "engine built at precision fp16, the bundle's ONNX model is fp32",
    ]


def test_only_the_changed_field_is_reported():
    here = {**BUILT, "tensorrt": "10.3.1"}
    assert identity_mismatches(BUILT, here) == ["engine built with TensorRT 10.3.0, this machine has 10.3.1"]


def test_a_record_lacking_a_field_is_a_mismatch():
    recorded = {k: v for k, v in BUILT.items() if k != "gpu"}
    [message] = identity_mismatches(recorded, BUILT)
    assert "'gpu'" in message and "Orin" in message


def test_fields_absent_from_the_current_side_are_not_compared():
    assert identity_mismatches(BUILT, {"tensorrt": "10.3.0"}) == []


def record(**changes):
    entry = {"file": "downstream.engine", "sha256": "c" * 64, "profiles": [], **BUILT}
    entry.update(changes)
    return entry


def manifest(engines):
    return Manifest.from_json({**bundle_json(), "engines": engines})


def test_engine_entry_returns_the_record():
    assert engine_entry(manifest({"downstream": record()}), Role.DOWNSTREAM).file == "downstream.engine"


@pytest.mark.parametrize("engines", [{}, {"anchornet": record()}])
def test_missing_engine_says_how_to_build_it(engines):
    with pytest.raises(BundleError, match="no TensorRT engine for 'downstream'.*build"):
        engine_entry(manifest(engines), Role.DOWNSTREAM, source="bundles/x/bundle.json")


def test_incomplete_engine_record_names_the_field():
    with pytest.raises(BundleError, match=r"engines\.downstream\.profiles"):
        manifest({"downstream": record(profiles="63")})


def test_an_engine_file_outside_the_bundle_is_refused():
    with pytest.raises(BundleError, match=r"engines\.downstream\.file.*not a file name inside the bundle"):
        manifest({"downstream": record(file="../elsewhere.engine")})
