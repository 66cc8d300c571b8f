"""The docs quote only figures of docs/benchmarks/, stamped (the checker: tests/docs_figures.py).

The convention is in docs/benchmarks/README.md: a marked block's every
decimal must be a number of the file its marker names, no figure one off in
its last digit may pass, and no measurement may stand outside a block.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.docs_figures import (
    ROOT,
    Block,
    check,
    check_stamp,
    git_output,
    guides,
    load,
    parse,
)


def test_the_readme_and_guides_quote_their_files():
    errors = check(guides())
    assert not errors, "\n".join(errors)


def test_every_guide_figure_block_is_found():
    """The README and the guides do carry marked blocks (a marker syntax slip would silently check nothing)."""
    counted = {path.name: len(parse(path)[0]) for path in guides()}
    assert counted["README.md"] >= 4 and counted["accuracy.md"] >= 2 and counted["performance.md"] >= 2, counted


SYNTHETIC_JSON = {
    "environment": {"commit": "abc1234"},
    "bundles": {"default": {"sha256": {"anchornet": "cc1da685" + "0" * 56}}},
    "top1": 93.0,
    "agreement": 0.9375,
    "ratio": 0.5871682568104184,
    "p50_ms": 26.566,
    "macs": 394722088,
}
SYNTHETIC_MD = """\
# A guide

<!-- figures: docs/benchmarks/x.json; commit: abc1234; weights: anchornet.onnx cc1da685 -->
| what | figure |
|---|---|
| decided class | 93.0 % |
| agreement | 93.8 % |
| pipeline / full image | 0.587 |
| capture to result | 26.6 ms |
| AnchorNet | 394.7 M multiply-adds |

Settings in code are not figures: `budget=0.55`; integers are not checked: 600 images.
"""


def _synthetic(tmp_path: Path, text: str, document: dict = SYNTHETIC_JSON) -> list[str]:
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "docs" / "benchmarks" / "x.json").write_text(json.dumps(document), encoding="utf-8")
    guide = tmp_path / "docs" / "guide.md"
    guide.write_text(text, encoding="utf-8")
    load.cache_clear()
    return check([guide], root=tmp_path)


def test_a_synthetic_block_passes(tmp_path):
    assert _synthetic(tmp_path, SYNTHETIC_MD) == []


@pytest.mark.parametrize("figure", ["93.0", "93.8", "0.587", "26.6", "394.7"])
@pytest.mark.parametrize("step", [-1, 1])
def test_one_digit_changed_fails_naming_file_line_and_figure(tmp_path, figure, step):
    changed = str(Decimal(figure) + step * Decimal(1).scaleb(Decimal(figure).as_tuple().exponent))
    text = SYNTHETIC_MD.replace(f" {figure}", f" {changed}", 1)
    assert text != SYNTHETIC_MD
    errors = _synthetic(tmp_path, text)
    line = 1 + text.splitlines().index(next(row for row in text.splitlines() if f" {changed}" in row))
    assert any(e.startswith(f"{tmp_path / 'docs' / 'guide.md'}:{line}: figure {changed}") for e in errors), errors


def test_a_figure_that_a_neighbour_would_also_match_is_ambiguous(tmp_path):
    document = SYNTHETIC_JSON | {"other": 0.588}
    errors = _synthetic(tmp_path, SYNTHETIC_MD, document)
    assert any("figure 0.587 would still pass as 0.588" in e and "other" in e for e in errors), errors


def test_keys_narrow_the_numbers_a_block_may_quote(tmp_path):
    document = SYNTHETIC_JSON | {"other": 0.588}
    marked = SYNTHETIC_MD.replace("cc1da685 -->", "cc1da685; keys: top1, agreement, ratio, p50_ms, macs -->")
    assert _synthetic(tmp_path, marked, document) == []


def test_an_unmarked_measurement_fails(tmp_path):
    text = SYNTHETIC_MD + "\nThe pipeline ran at 0.59x of the full image, 26.6 ms and 37.5 frames/s.\n"
    errors = _synthetic(tmp_path, text)
    assert [e.split(": ", 1)[1].split(" outside")[0] for e in errors] == [
        "measured figure '0.59x'",
        "measured figure '26.6 ms'",
        "measured figure '37.5 frames/s'",
    ]
    exempt = SYNTHETIC_MD + "\n<!-- not-measured: the paper's figures -->\nThe paper reports 75.1 % top-1.\n"
    assert _synthetic(tmp_path, exempt) == []


def test_stamps_are_checked(tmp_path):
    wrong_sha = SYNTHETIC_MD.replace("cc1da685 -->", "dd1da685 -->")
    assert any("weights sha256 dd1da685 is not in" in e for e in _synthetic(tmp_path, wrong_sha))
    wrong_commit = SYNTHETIC_MD.replace("commit: abc1234", "commit: abc9999")
    assert any("measured at abc1234" in e for e in _synthetic(tmp_path, wrong_commit))
    unstamped = SYNTHETIC_MD.replace("; commit: abc1234; weights: anchornet.onnx cc1da685", "")
    errors = _synthetic(tmp_path, unstamped)
    assert any("lacks its stamp 'commit" in e for e in errors) and any("lacks its stamp 'weights" in e for e in errors)


def test_a_marker_must_sit_on_its_block(tmp_path):
    loose = SYNTHETIC_MD.replace("cc1da685 -->\n", "cc1da685 -->\n\n")
    errors = _synthetic(tmp_path, loose)
    assert any("must sit directly above its block" in e for e in errors), errors


def test_stamps_without_a_recorded_commit_are_checked_against_git():
    """accuracy.json has no environment.commit: its stamp must name a commit that changed it, and the weights then."""
    shallow = (git_output("rev-parse", "--is-shallow-repository", root=ROOT) or "").strip()
    if shallow != "false":
        pytest.skip("needs the repository's git history (no git, or a shallow clone)")

    def stamp(commit: str, weights: str) -> list[str]:
        return check_stamp(
            ROOT, Block(ROOT / "README.md", 1, "docs/benchmarks/accuracy.json", {"commit": commit, "weights": weights})
        )

    assert stamp("9fd3ca4", "weights/anchornet.pt fbc4e75f") == []
    assert any(
        "never changed docs/benchmarks/accuracy.json" in e for e in stamp("d744611", "weights/anchornet.pt fbc4e75f")
    )
    assert any("does not have sha256 caa0ab7a" in e for e in stamp("9fd3ca4", "weights/anchornet.pt caa0ab7a"))
