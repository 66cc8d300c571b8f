"""Smoke test of benchmarks.scale's access-and-metrics measurement: it runs, its figures relate as they must.

No timed assertions beyond "positive and finite": speed is measured by the
benchmark, not here.
"""

from __future__ import annotations

import math

import pytest

from benchmarks import scale


def test_the_overhead_measurement_reports_every_part_per_request():
    figures = scale.access_and_metrics_overhead(calls=200, rounds=3)
    assert figures["calls_per_round"] == 200 and figures["rounds"] == 3
    for name in ("auth_us", "tally_us", "request_path_us", "store_us"):
        assert 0 < figures[name] < math.inf, name
    line = scale.overhead_line(figures)
    assert f"{figures['request_path_us']:.1f} us on the request path" in line
    assert f"key {figures['auth_us']:.1f} us" in line and f"{figures['store_us']:.1f} us more" in line


def test_too_few_images_is_a_usage_error_and_a_missing_bundle_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        scale.build_parser().parse_args(["--images", "8"])  # the steady rate would time no batch
    assert stop.value.code == 2 and f"must be at least {scale.MIN_IMAGES}, got 8" in capsys.readouterr().err
    args = scale.build_parser().parse_args(["--bundle", str(tmp_path / "missing"), "--images", str(scale.MIN_IMAGES)])
    assert scale.run(args) == 1  # before Ray is started
    error = capsys.readouterr().err
    assert error.startswith("benchmark failed:") and error.count("\n") == 1
