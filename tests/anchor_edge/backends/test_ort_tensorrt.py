"""ONNX Runtime's TensorRT provider options from a bundle, worked by hand: profiles, engine cache key, precision flags.

Pure: a hand-written bundle.json (tests/manifests.py) and a made-up machine, no
model files, no GPU. The session that takes these options is tested with a fake
onnxruntime in test_ort_providers.py, on a GPU in tests/gpu/test_ort_tensorrt_provider.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from anchor_edge.backends.ort_providers import ProviderOptions
from anchor_edge.backends.ort_tensorrt import (
    TensorrtMachine,
    detect_machine,
    profile_shapes,
    tensorrt_provider_options,
)
from anchor_edge.backends.trt.environment import tensorrt_available
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.load import Bundle
from anchor_edge.bundle.schema import Manifest, Profile
from anchor_edge.errors import BackendError, BundleError, InputError
from tests.manifests import bundle_json

ROOT = Path("/bundles/digits")
ORIN = TensorrtMachine(onnxruntime="1.20.1", tensorrt="10.3.0", gpu="NVIDIA Jetson AGX Orin", compute_capability="8.7")
INT8_TENSORRT = {
    "format": "QDQ",
    "target": "tensorrt",
    "activations": "int8, symmetric (zero point 0), per tensor",
    "weights": "int8, symmetric (zero point 0), per output channel; biases float",
    "calibration_method": "MinMax, mean of per-batch ranges",
    "unquantized_op_types": ["Softmax"],
    "float_layers": [],
    "float_output_ops": [],
    "seven_bit_layers": [],
}


def bundle(edit=None) -> Bundle:
    meta = bundle_json()
    if edit is not None:
        edit(meta)
    return Bundle(ROOT, Manifest.from_json(meta))


def downstream_as(precision: str, int8: dict | None = None):
    def edit(meta):
        meta["models"]["downstream"]["precision"] = precision
        if int8 is not None:
            meta["models"]["downstream"]["int8"] = int8

    return edit


def test_downstream_gets_one_profile_per_patch_size_and_the_full_image():
    """Defaults 8 images, 32 patches; accurate preset K = 24, 10, 8 tunes the patch profiles, one image the 224 one."""
    assert tensorrt_provider_options(bundle(), Role.DOWNSTREAM, ORIN) == {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "/bundles/digits/ort-tensorrt/"
        "downstream_fp32_222222222222_ort1.20.1_trt10.3.0_NVIDIA-Jetson-AGX-Orin_sm87",
        "trt_fp16_enable": False,
        "trt_int8_enable": False,
        "trt_profile_min_shapes": "image:1x3x63x63,image:1x3x95x95,image:1x3x111x111,image:1x3x224x224",
        "trt_profile_opt_shapes": "image:24x3x63x63,image:10x3x95x95,image:8x3x111x111,image:1x3x224x224",
        "trt_profile_max_shapes": "image:32x3x63x63,image:32x3x95x95,image:32x3x111x111,image:8x3x224x224",
    }


def test_anchornet_gets_one_profile_of_whole_images():
    assert tensorrt_provider_options(bundle(), Role.ANCHORNET, ORIN) == {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "/bundles/digits/ort-tensorrt/"
        "anchornet_fp32_111111111111_ort1.20.1_trt10.3.0_NVIDIA-Jetson-AGX-Orin_sm87",
        "trt_fp16_enable": False,
        "trt_int8_enable": False,
        "trt_profile_min_shapes": "image:1x3x224x224",
        "trt_profile_opt_shapes": "image:1x3x224x224",
        "trt_profile_max_shapes": "image:8x3x224x224",
    }


def test_the_visual_preset_tunes_for_its_own_patch_counts():
    options = tensorrt_provider_options(bundle(lambda m: m["lsp"].update(preset="visual")), Role.DOWNSTREAM, ORIN)
    assert options["trt_profile_opt_shapes"] == "image:5x3x63x63,image:3x3x95x95,image:2x3x111x111,image:1x3x224x224"


def test_a_bundle_with_engines_gives_the_profiles_its_engines_were_built_with():
    """Built with --max-batch 4 --max-patches 16: the provider gets exactly those shapes, not the defaults."""
    built = [
        {"input": "image", "min": [1, 3, k, k], "opt": [opt, 3, k, k], "max": [top, 3, k, k]}
        for k, opt, top in ((63, 16, 16), (95, 10, 16), (111, 8, 16), (224, 1, 4))
    ]
    record = {
        "file": "downstream.engine", "sha256": "e" * 64, "profiles": built, "tensorrt": "10.3.0",
        "gpu": "Orin", "compute_capability": "8.7", "onnx_sha256": "2" * 64, "precision": "fp32",
    }  # fmt: skip
    options = tensorrt_provider_options(bundle(lambda m: m["engines"].update(downstream=record)), "downstream", ORIN)
    assert options["trt_profile_min_shapes"] == "image:1x3x63x63,image:1x3x95x95,image:1x3x111x111,image:1x3x224x224"
    assert options["trt_profile_opt_shapes"] == "image:16x3x63x63,image:10x3x95x95,image:8x3x111x111,image:1x3x224x224"
    assert options["trt_profile_max_shapes"] == "image:16x3x63x63,image:16x3x95x95,image:16x3x111x111,image:4x3x224x224"


def test_fp16_model_switches_on_fp16_and_has_its_own_cache():
    options = tensorrt_provider_options(bundle(downstream_as("fp16")), Role.DOWNSTREAM, ORIN)
    assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == (True, False)
    assert Path(options["trt_engine_cache_path"]).name.startswith("downstream_fp16_222222222222_")


def test_int8_for_tensorrt_switches_on_int8_with_no_calibration_table():
    """Q/DQ nodes carry the scales; TensorRT refuses a calibration table for such a graph, so none is named."""
    options = tensorrt_provider_options(bundle(downstream_as("int8", INT8_TENSORRT)), Role.DOWNSTREAM, ORIN)
    assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == (False, True)
    assert not any("calibration" in name for name in options)
    assert Path(options["trt_engine_cache_path"]).name.startswith("downstream_int8_")


def test_int8_for_the_cpu_is_refused_saying_how_to_reexport():
    cpu = {**INT8_TENSORRT, "target": "cpu", "activations": "uint8, asymmetric, per tensor"}
    with pytest.raises(
        InputError, match=r"quantized for ONNX Runtime's CPU.*--precision downstream=int8 --int8-target"
    ):
        tensorrt_provider_options(bundle(downstream_as("int8", cpu)), Role.DOWNSTREAM, ORIN)


def test_int8_without_qdq_nodes_is_refused_naming_the_missing_calibration_table():
    with pytest.raises(InputError, match=r"QOperator form.*no TensorRT calibration table.*--int8-target tensorrt"):
        tensorrt_provider_options(
            bundle(downstream_as("int8", {**INT8_TENSORRT, "format": "QOperator"})), Role.DOWNSTREAM, ORIN
        )


def test_int8_without_its_record_is_a_bundle_error():
    with pytest.raises(BundleError, match=r"models.downstream is int8 but has no int8 record"):
        tensorrt_provider_options(bundle(downstream_as("int8")), Role.DOWNSTREAM, ORIN)


def test_a_cache_folder_given_holds_the_same_keyed_subfolder(tmp_path):
    options = tensorrt_provider_options(bundle(), Role.ANCHORNET, ORIN, ProviderOptions(tensorrt_cache=str(tmp_path)))
    assert options["trt_engine_cache_path"] == str(
        tmp_path / "anchornet_fp32_111111111111_ort1.20.1_trt10.3.0_NVIDIA-Jetson-AGX-Orin_sm87"
    )


@pytest.mark.parametrize(
    "machine",
    [
        ORIN._replace(onnxruntime="1.21.0"),
        ORIN._replace(tensorrt="10.7.0"),
        ORIN._replace(gpu="NVIDIA GeForce RTX 4090"),
        ORIN._replace(compute_capability="8.9"),
    ],
)
def test_every_machine_field_keys_the_cache(machine):
    def folder(on):
        return tensorrt_provider_options(bundle(), Role.DOWNSTREAM, on)["trt_engine_cache_path"]

    assert folder(machine) != folder(ORIN)


def test_a_changed_onnx_file_gets_another_cache_folder():
    def changed(meta):
        meta["models"]["downstream"]["sha256"] = "3" * 64

    before = tensorrt_provider_options(bundle(), Role.DOWNSTREAM, ORIN)["trt_engine_cache_path"]
    after = tensorrt_provider_options(bundle(changed), Role.DOWNSTREAM, ORIN)["trt_engine_cache_path"]
    assert (Path(before).name.split("_")[2], Path(after).name.split("_")[2]) == ("222222222222", "333333333333")


def test_an_input_name_the_provider_cannot_parse_is_refused():
    profile = Profile("image:0", (1, 3, 63, 63), (1, 3, 63, 63), (1, 3, 63, 63))
    with pytest.raises(InputError, match=r"'image:0' cannot be named in ONNX Runtime's TensorRT profile options"):
        profile_shapes((profile,), "min")


def test_without_tensorrt_the_machine_cannot_be_read_and_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    tensorrt_available.cache_clear()
    try:
        with pytest.raises(BackendError, match=r"tensorrt not installed.*pip install anchor-edge\[trt\].*'cuda'"):
            detect_machine()
    finally:
        tensorrt_available.cache_clear()


def test_the_options_are_what_the_native_engine_record_keys_on():
    """The cache key holds each identity field of a native engine (trt/identity.py) but the checksum's tail."""
    from anchor_edge.backends.trt.identity import IDENTITY_FIELDS

    key = Path(tensorrt_provider_options(bundle(), Role.DOWNSTREAM, ORIN)["trt_engine_cache_path"]).name
    values = {"tensorrt": "trt10.3.0", "gpu": "NVIDIA-Jetson-AGX-Orin", "compute_capability": "sm87"}
    values |= {"onnx_sha256": "2" * 12, "precision": "fp32"}
    assert set(values) == set(IDENTITY_FIELDS) and all(value in key.split("_") for value in values.values())
