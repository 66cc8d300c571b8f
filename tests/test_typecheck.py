"""mypy checks the TensorRT code against the TensorRT type stubs, so a removed API fails here, not on a Jetson.

No TensorRT runs on the CI machines; the stubs (tensorrt-stubs, for TensorRT
10.13) are the only way to catch a call such as `engine.num_bindings`
(removed in TensorRT 10) before the code reaches a GPU. The stubs as shipped
cannot be used directly: they install into the `tensorrt/` package folder
without a py.typed marker (mypy then ignores them), and a few generated
signatures are not valid Python (a parameter named `in`, a required
parameter after defaulted ones). The fixture copies them into a temporary
folder, repairs exactly the lines Python refuses to parse, and points mypy's
search path at the copy. pycuda has no stubs and is treated as untyped.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

REPO = Path(__file__).resolve().parent.parent
CHECKED = [
    "anchor_edge/backends/trt/runner.py",
    "anchor_edge/backends/trt/environment.py",
    "export/engines/build.py",
    "export/engines/plan.py",
]
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")
CONFIG = """\
[mypy]
mypy_path = {stubs}
cache_dir = {cache}
follow_imports = silent
check_untyped_defs = True
warn_unused_ignores = True

[mypy-pycuda,pycuda.*,tensorrt_libs]
ignore_missing_imports = True

[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
ignore_errors = True
"""


@pytest.fixture(scope="module")
def mypy_config(tmp_path_factory) -> Path:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.fail("tensorrt-stubs is not installed: pip install anchor-edge[test] (or --no-deps tensorrt-stubs)")
    site_packages = Path(spec.origin).parent.parent
    folder = tmp_path_factory.mktemp("mypy")
    stubs = folder / "stubs"
    for package in STUB_PACKAGES:
        (stubs / package).mkdir(parents=True)
        for stub in (site_packages / package).glob("*.pyi"):
            repaired = _parseable(stub.read_text(encoding="utf-8"), stub.name)
            (stubs / package / stub.name).write_text(repaired, encoding="utf-8")
    config = folder / "mypy.ini"
    config.write_text(CONFIG.format(stubs=stubs, cache=folder / "cache"), encoding="utf-8")
    return config


def run_mypy(config: Path, *paths: str) -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(["--config-file", str(config), *paths])
    return stdout + stderr, status


def test_tensorrt_code_type_checks(mypy_config, monkeypatch):
    monkeypatch.chdir(REPO)
    report, status = run_mypy(mypy_config, *CHECKED)
    assert status == 0, f"mypy found problems:\n{report}"


def test_a_removed_tensorrt_api_is_caught(mypy_config, tmp_path):
    """Proves the stubs are in force: with tensorrt untyped, this snippet would pass."""
    snippet = tmp_path / "uses_removed_api.py"
    snippet.write_text(
        "import tensorrt as trt\n\n\ndef bindings(engine: trt.ICudaEngine) -> int:\n    return engine.num_bindings\n",
        encoding="utf-8",
    )
    report, status = run_mypy(mypy_config, str(snippet))
    assert status == 1 and '"ICudaEngine" has no attribute "num_bindings"' in report, report


def _parseable(source: str, name: str) -> str:
    """Repair the stub lines Python cannot parse, one SyntaxError at a time."""
    lines = source.splitlines()
    for _ in range(len(lines)):
        try:
            ast.parse("\n".join(lines), filename=name)
            return "\n".join(lines) + "\n"
        except SyntaxError as error:
            if error.lineno is None:
                raise
            index = error.lineno - 1
            repaired = _repair_signature(lines[index])
            if repaired == lines[index]:
                raise
            lines[index] = repaired
    raise AssertionError(f"{name}: too many unparseable lines")


def _repair_signature(line: str) -> str:
    """Rename a parameter called `in` (a keyword) and give parameters after a defaulted one a default."""
    renamed = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
    if renamed != line:
        return renamed
    match = re.match(r"(\s*def \w+\()(.*)(\) -> .*)$", line)
    if match is None:
        return line
    parameters, depth, current = [], 0, ""
    for char in match.group(2):
        depth += char in "[("
        depth -= char in "])"
        if char == "," and depth == 0:
            parameters.append(current)
            current = ""
        else:
            current += char
    parameters.append(current)
    defaulted = False
    for i, parameter in enumerate(parameters):
        if "=" in parameter:
            defaulted = True
        elif defaulted and not parameter.strip().startswith("*"):
            parameters[i] = f"{parameter} = ..."
    return match.group(1) + ",".join(parameters) + match.group(3)
