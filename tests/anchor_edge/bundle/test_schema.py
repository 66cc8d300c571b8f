"""bundle.json through one typed schema: read and written by the same types, documented field by field."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import typing
from pathlib import Path

import pytest

from anchor_edge import BundleError
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.baselines import Baselines
from anchor_edge.bundle.choices import Precision, Role
from anchor_edge.bundle.schema import Manifest, read_manifest
from tests.manifests import bundle_json

DOC = Path(__file__).resolve().parents[3] / "docs" / "bundle-format.md"


def _blocks(kind: type, seen: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every dataclass (and NamedTuple) reachable from `kind`, with its field names."""
    names = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else list(kind._fields)
    seen[kind.__name__] = names
    hints = typing.get_type_hints(kind)

    def visit(hint: object) -> None:
        for arg in typing.get_args(hint):
            visit(arg)
        generic = typing.get_origin(hint)  # ModelEntry[int] is the block ModelEntry
        block = generic if dataclasses.is_dataclass(generic) else hint
        is_block = dataclasses.is_dataclass(block) or (isinstance(block, type) and hasattr(block, "_fields"))
        if is_block and block.__name__ not in seen:
            _blocks(block, seen)

    for name in names:
        visit(hints[name])
    return seen


def test_the_format_page_lists_exactly_the_schema_fields():
    """bundle.json's blocks and baselines.json's, each a section of docs/bundle-format.md."""
    sections = re.split(r"^### `(\w+)`$", DOC.read_text(encoding="utf-8"), flags=re.M)
    documented = {
        name: re.findall(r"^\| `(\w+)` \|", body, flags=re.M) for name, body in zip(sections[1::2], sections[2::2])
    }
    schema = _blocks(Baselines, _blocks(Manifest, {}))
    assert set(documented) == set(schema)
    for block, fields in schema.items():
        assert sorted(documented[block]) == sorted(fields), block


def test_an_exported_manifest_reads_and_writes_back_to_the_same_json(small_bundle):
    stored = json.loads((small_bundle / "bundle.json").read_text())
    manifest = read_manifest(small_bundle)
    assert manifest.to_json() == stored
    assert manifest.models[Role.ANCHORNET].precision is Precision.FP32
    assert manifest.models.downstream.multiply_adds[63] == stored["models"]["downstream"]["multiply_adds"]["63"]


def test_a_version_1_bundle_written_before_the_schema_module_still_loads(small_bundle, tmp_path):
    """The first exporter wrote "attention_output": null on every GAP branch, listed engines as {}, and had no
    branch rule or heatmap."""
    copy = tmp_path / "old"
    shutil.copytree(small_bundle, copy)
    stored = json.loads((copy / "bundle.json").read_text())
    for branch in stored["branches"]:
        branch["attention_output"] = None
    del stored["decision"]["branch_rule"]  # written before the widest rule existed: the paper's rule
    del stored["decision"]["heatmap"]  # and before the heatmap choice: the paper's F[class]
    (copy / "bundle.json").write_text(json.dumps(stored))
    bundle = load_bundle(copy)
    assert [b.attention_output for b in bundle.branches] == [None, None, None] and not bundle.manifest.engines
    assert (bundle.branch_rule, bundle.heatmap) == ("confident", "class")


@pytest.mark.parametrize("name", ["../anchornet.onnx", "/etc/hostname", "models/anchornet.onnx", "..", ""])
def test_a_model_file_outside_the_bundle_is_refused_before_anything_is_opened(name):
    data = bundle_json()
    data["models"]["anchornet"]["file"] = name
    with pytest.raises(BundleError, match=r"models\.anchornet\.file .*not a file name inside the bundle directory"):
        Manifest.from_json(data)


def test_a_model_file_that_links_out_of_the_bundle_is_refused(small_bundle, tmp_path):
    copy = tmp_path / "linked"
    shutil.copytree(small_bundle, copy)
    outside = tmp_path / "outside.onnx"
    (copy / "downstream.onnx").rename(outside)
    (copy / "downstream.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match=r"downstream\.onnx \(models\.downstream\.file\) is a link"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["models"]["downstream"].update(precision="int4"),
            r"models\.downstream\.precision is 'int4'; expected one of 'fp32', 'fp16', 'int8'",
        ),
        (lambda m: m["models"]["downstream"]["multiply_adds"].update(big=1), r"models\.downstream\.multiply_adds"),
        # Each role's cost has one form: AnchorNet one pass, the downstream one per input size.
        (
            lambda m: m["models"]["anchornet"].update(multiply_adds={"224": 1}),
            r"models\.anchornet\.multiply_adds must be int, got dict",
        ),
        (
            lambda m: m["models"]["downstream"].update(multiply_adds=4),
            r"models\.downstream\.multiply_adds must be dict, got int",
        ),
        (lambda m: m["lsp"].update(preset="quick"), r"lsp\.preset is 'quick'"),
        # Sizes that would fail every image later, blaming the image.
        (
            lambda m: m["preprocess"].update(crop=300),
            r"preprocess\.crop \(300\) must be above 0 and at most resize_short \(256\)",
        ),
        (lambda m: m["branches"][2].update(receptive_field=300), r"branches\[2\] needs 0 < receptive_field <= crop"),
        (lambda m: m["branches"][0].update(stride=0), r"branches\[0\] needs .*got 63, 0 and 21"),
        (lambda m: m["models"]["anchornet"].update(mean=[1, 2]), r"models\.anchornet\.mean must have 3 entries"),
        (
            lambda m: m.update(schema_version=2),
            r"schema_version 2; this anchor-edge reads 1: re-export the bundle with python export/to_trt.py",
        ),
    ],
)
def test_type_errors_name_the_field(change, message):
    data = bundle_json()
    change(data)
    with pytest.raises(BundleError, match=message):
        Manifest.from_json(data, source="bundle.json")
