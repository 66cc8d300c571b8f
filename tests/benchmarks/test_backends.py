"""benchmarks/backends.py on the small bundle: every setting measured, with its verify agreement beside its speed."""

import json

import pytest

from benchmarks import backends


def test_backends_side_by_side_with_agreement(small_bundle, tmp_path, capsys):
    out = tmp_path / "backends.json"
    assert (
        backends.main(
            [
                "--bundle",
                str(small_bundle),
                "--batch-sizes",
                "1",
                "--seconds",
                "0.5",
                "--warmup",
                "0.1",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    labels = list(report["settings"])
    assert labels[0] == backends.REFERENCE and report["settings"][labels[0]]["top1_agreement"] == 1.0
    try:
        import openvino  # noqa: F401

        assert "openvino CPU f32" in labels and report["settings"]["openvino CPU f32"]["top1_agreement"] == 1.0
    except ImportError:
        pass
    ((result),) = report["results"]
    reference = result["wall_ms"][backends.REFERENCE]
    for label, ratio in result["over_reference_paired"].items():  # a median of per-round ratios: within the extremes
        wall = result["wall_ms"][label]
        assert wall["min"] / reference["max"] <= ratio <= wall["max"] / reference["min"]
    assert set(result["wall_ms"]) == set(labels)
    assert "agreement" in capsys.readouterr().out


def test_a_batch_size_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        backends.main(["--batch-sizes", "1", "0"])
    assert stop.value.code == 2 and "needs an integer >= 1, got '0'" in capsys.readouterr().err
