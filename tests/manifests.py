"""A complete, hand-written bundle.json for tests that need a manifest but no exported models, and a hand edit of a
real one."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path


def _model(file: str, sha: str, inputs: list, outputs: list, multiply_adds) -> dict:
    return {
        "file": file,
        "sha256": sha,
        "precision": "fp32",
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "inputs": inputs,
        "outputs": outputs,
        "weights": "random",
        "parameters": 1000,
        "multiply_adds": multiply_adds,
    }


BUNDLE_JSON = {
    "schema_version": 1,
    "trained": False,
    "num_classes": 10,
    "class_names": [str(i) for i in range(10)],
    "preprocess": {
        "resize_short": 256,
        "crop": 224,
        "channel_order": "RGB",
        "method": "central square of the short side, resized (INTER_AREA down, INTER_LINEAR up), center crop",
    },
    "branches": [
        {"name": f"B{k}", "receptive_field": k, "stride": 8, "map_size": (224 - k) // 8 + 1, "map_output": f"map_{k}"}
        for k in (63, 95, 111)
    ],
    "decision": {"vote_min": 2, "branch_rule": "confident", "heatmap": "class", "anchor_vote": 0.0},
    "lsp": {"preset": "accurate", "presets": {}},
    "models": {
        "anchornet": {
            **_model(
                "anchornet.onnx",
                "1" * 64,
                [{"name": "image", "shape": ["batch", 3, 224, 224], "dtype": "float32"}],
                [{"name": "probs", "shape": ["batch", 3, 10], "dtype": "float32"}],
                395_000_000,
            ),
            "pooling": "gap",
        },
        "downstream": {
            **_model(
                "downstream.onnx",
                "2" * 64,
                [{"name": "image", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
                [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
                {"63": 1, "95": 2, "111": 3, "224": 4},
            ),
            "name": "resnet18",
            "patch_sizes": [63, 95, 111, 224],
        },
    },
    "export": {
        "created": "2026-12-01T00:00:00+00:00",
        "python": "3.11",
        "torch": "2",
        "torchvision": "0",
        "onnx": "1",
        "onnxruntime": "1",
        "opset": 17,
    },
    "engines": {},
}


def bundle_json() -> dict:
    """A fresh copy of BUNDLE_JSON to edit."""
    return copy.deepcopy(BUNDLE_JSON)


def without_downstream_cost(bundle: Path, to: Path, size: str) -> Path:
    """A copy of `bundle` whose bundle.json, edited by hand, records no downstream multiply-adds at `size`."""
    twin = shutil.copytree(bundle, to)  # the model files stay as they were, so their checksums still hold
    manifest = json.loads((twin / "bundle.json").read_text())
    del manifest["models"]["downstream"]["multiply_adds"][size]
    (twin / "bundle.json").write_text(json.dumps(manifest))
    return twin
