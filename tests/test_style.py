"""The tree stays as the formatter and linter left it: 120-character lines, sorted imports, no unused names.

`ruff format` was run once over the whole tree (issue #28); this keeps a
change from bringing long lines or unsorted imports back. To fix a failure:
`python -m ruff format PATHS && python -m ruff check --fix PATHS` with the PATHS below.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff")
REPO = Path(__file__).resolve().parent.parent
#: The Python of the tree (the guides' code examples are written for reading, not for the formatter).
PYTHON = ["anchor_edge", "export", "benchmarks", "tests", "setup.py"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing_to_change(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *PYTHON], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
