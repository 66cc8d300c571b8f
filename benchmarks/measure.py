"""Interleaved timing: every item runs once per round, A B C C B A ..., and summary statistics.

Why interleave: on a shared or thermally throttled machine the speed drifts
over seconds. Timing all of A, then all of B, would charge the drift to
whichever ran during the slow spell; one round of A, B, C takes well under a
second, so drift hits all items alike and their ratios stay honest. The
ratio of two items is also taken round by round (paired), whose median is
the most drift-proof number we report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: An item's one measured call on a batch; returns its own breakdown {name: ms} (may be empty).
Item = Callable[[Any], Mapping[str, float]]

PERCENTILES = (50, 90, 99)


def interleaved(
    items: Mapping[str, Item],
    batches: Sequence[Any],
    *,
    warmup_s: float,
    seconds: float | None,
    iterations: int | None,
) -> dict[str, dict[str, list[float]]]:
    """Run `items` in rounds after a timed warm-up; return {item: {"wall": [ms...], breakdown key: [ms...]}}.

    Round r gives every item the same batch, batches[r % len(batches)]; odd
    rounds run the items in reverse (A B C C B A ...), so no item always runs
    right after the same neighbour or always first in a round. The
    warm-up also runs whole rounds (first calls allocate arenas and pick
    kernels). Measurement stops after `iterations` rounds when given, else at
    the end of the first whole pass over `batches` once `seconds` have passed,
    so every batch is timed equally often and the images' mix is the one
    chosen; at least two rounds always run, so std exists.
    """
    if not items or not batches:
        raise ValueError("nothing to measure: give at least one item and one batch")
    start, rounds = time.perf_counter(), 0
    while time.perf_counter() - start < warmup_s:
        for call in items.values():
            call(batches[rounds % len(batches)])
        rounds += 1
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": []} for name in items}
    start, rounds = time.perf_counter(), 0
    while True:
        batch = batches[rounds % len(batches)]
        for name, call in items.items() if rounds % 2 == 0 else reversed(items.items()):
            begin = time.perf_counter()
            breakdown = call(batch)
            samples[name]["wall"].append((time.perf_counter() - begin) * 1e3)
            for key, ms in breakdown.items():
                samples[name].setdefault(key, []).append(ms)
        rounds += 1
        if iterations:
            done = rounds >= iterations
        else:
            done = rounds % len(batches) == 0 and time.perf_counter() - start >= (seconds or 0.0)
        if done and rounds >= 2:
            return samples


def summarize(values_ms: Sequence[float]) -> dict[str, float]:
    """mean, std, min, p50, p90, p99, max (milliseconds) and the sample count."""
    values = np.asarray(values_ms, dtype=np.float64)
    stats = {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
    }
    stats |= {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}
    stats["max"] = float(values.max())
    return stats


def paired_ratio(numerator_ms: Sequence[float], denominator_ms: Sequence[float]) -> float:
    """Median over rounds of numerator / denominator, each pair measured back to back."""
    return float(np.median(np.asarray(numerator_ms) / np.asarray(denominator_ms)))
