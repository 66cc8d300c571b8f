"""The run-time package's layers: the core never loads the video, CLI or scale layers; no file grows past 400 lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTER_LAYERS = ("anchor_edge.video", "anchor_edge.cli", "anchor_edge.scale")
CORE = [
    "anchor_edge",
    "anchor_edge.pipeline",
    "anchor_edge.timing",
    "anchor_edge.bundle.check_set",
    "anchor_edge.backends.ort",
    "anchor_edge.backends.openvino",
    "anchor_edge.backends.trt.runner",
]


def loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_import_anchor_edge_loads_no_video_cli_or_scale_module():
    loaded = loaded_after_importing(["anchor_edge"])
    assert "anchor_edge.pipeline" in loaded  # the check looks at the right process
    assert [m for m in loaded if m.startswith(OUTER_LAYERS)] == []


def test_the_core_modules_load_no_outer_layer_either():
    loaded = loaded_after_importing(CORE)
    assert [m for m in loaded if m.startswith(OUTER_LAYERS)] == []


def test_pipeline_stream_loads_the_video_layer_when_called():
    loaded = loaded_after_importing(["anchor_edge.video.stream"])
    assert "anchor_edge.video.sources" in loaded and "anchor_edge.cli" not in loaded


def test_no_file_in_the_package_is_over_400_lines():
    lengths = {
        str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
        for p in (REPO / "anchor_edge").rglob("*.py")
    }
    assert len(lengths) > 40
    assert {path: n for path, n in lengths.items() if n > 400} == {}
