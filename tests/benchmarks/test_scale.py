"""Smoke test of benchmarks.scale's access-and-metrics measurement: it runs, its figures relate as they must.

No timed assertions beyond "positive and finite": speed is measured by the
benchmark, not here.
"""

from __future__ import annotations

import math

from benchmarks import scale


def test_the_overhead_measurement_reports_every_part_per_request():
    figures = scale.access_and_metrics_overhead(calls=200, rounds=3)
    assert figures["calls_per_round"] == 200 and figures["rounds"] == 3
    for name in ("auth_us", "tally_us", "request_path_us", "store_us"):
        assert 0 < figures[name] < math.inf, name
    line = scale.overhead_line(figures)
    assert f"{figures['request_path_us']:.1f} us on the request path" in line
    assert f"key {figures['auth_us']:.1f} us" in line and f"{figures['store_us']:.1f} us more" in line
