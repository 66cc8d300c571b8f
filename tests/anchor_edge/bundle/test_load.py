"""bundle.json validation: every broken bundle is a BundleError that names the file or field."""

from __future__ import annotations

import json
import shutil

import pytest

from anchor_edge import BundleError
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role


@pytest.fixture()
def bundle_copy(small_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    return copy


def _edit(bundle_dir, change):
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    change(manifest)
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))


def test_a_valid_bundle_loads(small_bundle):
    bundle = load_bundle(small_bundle / "bundle.json")
    assert bundle.root == small_bundle
    assert [b.receptive_field for b in bundle.branches] == [63, 95, 111]
    assert bundle.path(Role.DOWNSTREAM).name == "downstream.onnx" and len(bundle.class_names) == 10


def test_missing_directory_says_how_to_export(tmp_path):
    with pytest.raises(BundleError, match="export/to_trt.py"):
        load_bundle(tmp_path / "nothing")


def test_bad_json(bundle_copy):
    (bundle_copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema_version 99"),
        (lambda m: m.pop("num_classes"), "field num_classes is missing"),
        (lambda m: m.update(num_classes="10"), "num_classes must be int"),
        (lambda m: m.update(class_names=["a"]), "class_names has 1 entries"),
        (lambda m: m["models"].pop("downstream"), "models.downstream is missing"),
        (lambda m: m["models"]["anchornet"].update(file="gone.onnx"), "gone.onnx"),
        (lambda m: m["models"]["anchornet"].update(std=[1, 0, 1]), "std > 0"),
        (lambda m: m["branches"].pop(), "expected 3 branches"),
        (lambda m: m["decision"].update(vote_min=True), "vote_min must be int"),
        (lambda m: m["decision"].update(anchor_vote=-1), "decision.anchor_vote must be a number >= 0, got -1"),
        (lambda m: m["decision"].update(anchor_vote="2"), "anchor_vote must be float"),
    ],
)
def test_schema_errors_name_the_field(bundle_copy, change, message):
    _edit(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_truncated_model_fails_its_checksum(bundle_copy):
    model = bundle_copy / "anchornet.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match="anchornet.onnx does not match its sha256"):
        load_bundle(bundle_copy)
