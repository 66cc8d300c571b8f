"""Stream figures of a bundle on a video file: end-to-end frames/s and capture-to-result latency per batch size.

`python benchmarks/latency.py --video FILE` runs `Pipeline.stream` over the
whole file once per batch size (one warm-up pass first, so the first
session runs are not counted), one bundle after another, and reports what
`anchor-edge predict FILE` prints at its end: frames, frames/s, dropped (0 for
a file: every frame is delivered) and latency p50/p99. On a file, latency
grows with the batch, since a frame waits for its batch-mates; frames/s is
what batching buys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anchor_edge.pipeline import Pipeline


def stream_figures(pipe: Pipeline, video: Path, batch_sizes: Sequence[int]) -> dict[str, dict]:
    """{batch size: StreamStats.to_dict()} for one pipeline over the whole video, after one warm-up pass."""
    with pipe.stream(video, batch=max(batch_sizes)) as warmup:
        for _ in warmup:
            pass
    figures = {}
    for batch in batch_sizes:
        with pipe.stream(video, batch=batch) as stream:
            for _ in stream:
                pass
        figures[str(batch)] = stream.stats.to_dict()
    return figures


def stream_table(label: str, figures: dict[str, dict]) -> str:
    lines = [f"{label}: stream over the video"]
    for batch, stats in figures.items():
        lines.append(
            f"  batch {batch:>3}: {stats['frames']} frames, {stats['frames_per_s']:.2f} frames/s, "
            f"latency p50 {stats['latency_ms_p50']:.1f} ms p99 {stats['latency_ms_p99']:.1f} ms, "
            f"dropped {stats['dropped']}"
        )
    return "\n".join(lines)
