"""baselines.json through its typed schema: an exporter's file round-trips, and every bad one names the field."""

from __future__ import annotations

import copy
import json

import pytest

from anchor_edge import BundleError
from anchor_edge.bundle.baselines import BASELINES_NAME, Baselines, read_baselines, write_baselines

#: What `python -m export.training.baselines --architecture resnet50` wrote (its recipe trains no resized baseline).
EXPORTED = {
    "models": {
        "full": {
            "file": "downstream_full.onnx",
            "name": "resnet50",
            "weights": "checkpoint:weights/resnet50/downstream_full.pt",
            "mean": [123.675, 116.28, 103.53],
            "std": [58.395, 57.120000000000005, 57.375],
            "multiply_adds": {"63": 333664256, "95": 750718976, "111": 1075871744, "224": 4087156736},
            "verification": {
                "images": 9,
                "sizes": [63, 95, 111, 224],
                "max_abs_diff": {"logits": 2.384185791015625e-06},
                "top1_agreement": 1.0,
                "tolerance": 0.001,
            },
        }
    }
}


def _exported() -> dict:
    return copy.deepcopy(EXPORTED)


def test_an_exported_baselines_json_reads_and_writes_back_byte_for_byte(tmp_path):
    text = json.dumps(EXPORTED, indent=2) + "\n"
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / BASELINES_NAME).write_text(text)
    baselines = read_baselines(tmp_path / "exported")
    assert baselines.models.full.multiply_adds[224] == 4087156736 and baselines.models.resized is None
    assert write_baselines(tmp_path / "written", baselines).read_text() == text


def test_missing_baselines_say_how_to_make_them(tmp_path):
    with pytest.raises(BundleError, match=r"no baselines in .*python -m export\.training\.baselines --out"):
        read_baselines(tmp_path)


def test_a_file_that_is_not_json_is_a_bundle_error(tmp_path):
    (tmp_path / BASELINES_NAME).write_text("{not json")
    with pytest.raises(BundleError, match=r"is not valid JSON .*python -m export\.training\.baselines"):
        read_baselines(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["models"].pop("full"), r"field models\.full is missing"),
        (lambda m: m["models"]["full"].update(multiply_adds={"big": 1}), r"models\.full\.multiply_adds must be keyed"),
        (lambda m: m["models"]["full"].update(mean=[1, 2]), r"models\.full\.mean must have 3 entries"),
        (lambda m: m["models"]["full"].update(std=[1, 0, 1]), r"models\.full\.std must be positive"),
        (lambda m: m["models"]["full"].update(file="../downstream.onnx"), r"models\.full\.file .*not a file name"),
        (lambda m: m["models"]["full"].update(file="/etc/hostname"), r"models\.full\.file .*not a file name"),
    ],
)
def test_a_bad_baselines_json_names_the_field(change, message):
    data = _exported()
    change(data)
    with pytest.raises(BundleError, match=message):
        Baselines.from_json(data)
