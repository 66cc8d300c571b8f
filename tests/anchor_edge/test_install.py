"""The base install leaves OpenCV and ONNX Runtime to the platform (a Jetson's JetPack), and says what is missing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _setup_keywords() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    return {kw.arg: kw.value for kw in call.keywords}


def test_the_base_install_pulls_neither_opencv_nor_onnxruntime():
    keywords = _setup_keywords()
    base = ast.literal_eval(keywords["install_requires"])
    extras = ast.literal_eval(keywords["extras_require"])
    assert not any(req.startswith(("opencv", "onnxruntime")) for req in base), base
    assert {req.split(">")[0] for req in extras["cpu"]} == {"opencv-python-headless", "onnxruntime"}
    readme = (REPO / "README.md").read_text()
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert '".[cpu,export,bench]"' in readme and ci_command in readme and '".[cpu,export,test,scale]"' in ci_command


def test_ray_is_imported_only_by_the_scale_commands():
    code = (
        "import sys, anchor_edge, anchor_edge.cli, anchor_edge.scale.batch, anchor_edge.scale.serve\n"
        "anchor_edge.cli.build_parser().parse_args(['batch', '--input', 'x', '--output', 'y'])\n"
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_without_opencv_the_import_says_what_to_install():
    code = "import sys; sys.modules['cv2'] = None\ntry:\n import anchor_edge\nexcept ImportError as e:\n print(e)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "pip install 'anchor-edge[cpu]'" in result.stdout and "JetPack" in result.stdout


def test_gstreamer_is_read_from_opencvs_build_information():
    from anchor_edge.cli.doctor import has_gstreamer

    assert has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n")
    assert not has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    assert not has_gstreamer("no video section at all")
