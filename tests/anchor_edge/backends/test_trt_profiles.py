"""TensorRT profile planning from bundle.json, shared by the engine build and ONNX Runtime's TensorRT provider."""

import pytest

from anchor_edge.backends.trt.profiles import plan_profiles
from anchor_edge.bundle.schema import Manifest
from anchor_edge.errors import BundleError
from tests.manifests import bundle_json

MANIFEST = Manifest.from_json(bundle_json())


def shapes(profile):
    return profile.min, profile.opt, profile.max


def test_accurate_preset_profiles_worked_by_hand():
    """accurate: K = 24, 10, 8 (docs/method.md §4); 24 is capped at max_patches 16; opt at 224 is one image."""
    plan = plan_profiles(MANIFEST, max_batch=8, max_patches=16, preset="accurate")
    assert [shapes(p) for p in plan["anchornet"]] == [((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))]
    assert [shapes(p) for p in plan["downstream"]] == [
        ((1, 3, 63, 63), (16, 3, 63, 63), (16, 3, 63, 63)),
        ((1, 3, 95, 95), (10, 3, 95, 95), (16, 3, 95, 95)),
        ((1, 3, 111, 111), (8, 3, 111, 111), (16, 3, 111, 111)),
        ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224)),
    ]
    assert {p.input for p in plan["anchornet"] + plan["downstream"]} == {"image"}


def test_visual_preset_tunes_for_its_smaller_patch_counts():
    plan = plan_profiles(MANIFEST, max_batch=4, max_patches=32, preset="visual")
    assert [p.opt[0] for p in plan["downstream"]] == [5, 3, 2, 1]
    assert [p.max[0] for p in plan["downstream"]] == [32, 32, 32, 4]


def test_a_single_patch_limit_caps_every_opt():
    plan = plan_profiles(MANIFEST, max_batch=1, max_patches=1, preset="accurate")
    assert all(p.min[0] == p.opt[0] == p.max[0] == 1 for p in plan["anchornet"] + plan["downstream"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"max_batch": 0, "max_patches": 8, "preset": "accurate"}, "max_batch"),
        ({"max_batch": 8, "max_patches": -1, "preset": "accurate"}, "max_patches"),
        ({"max_batch": 8, "max_patches": 8, "preset": "quick"}, "unknown LSP preset 'quick'"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        plan_profiles(MANIFEST, **arguments)


def test_missing_bundle_field_is_named():
    meta = bundle_json()
    del meta["preprocess"]["crop"]
    with pytest.raises(BundleError, match=r"preprocess\.crop"):
        plan_profiles(Manifest.from_json(meta), max_batch=8, max_patches=8, preset="accurate")
