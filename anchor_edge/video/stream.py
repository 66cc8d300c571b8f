"""Classify a stream of frames: `Pipeline.stream(source)` yields one result per frame, with stream figures.

A recorded source (a video file, an image folder) is read in order and, with
`batch` > 1, consecutive frames go through `predict_batch` together, which
pays on throughput whenever the pipeline is slower than the file is read
(always, on a CPU). A live source is read one newest frame at a time
(`anchor_edge.video.sources`), so latency stays bounded and the frames the
pipeline had no time for are counted as dropped.

Optional temporal smoothing (off by default) averages each frame's class
distribution (`Prediction.class_distribution`) over recent frames,
exponentially or over a window, so labels do not flicker from frame to
frame; the per-frame Prediction is left as it was.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError
from anchor_edge.prediction import Prediction
from anchor_edge.video.sources import DEFAULT_RECONNECTS, Frame, FrameSource, UnreadableFrame, open_source

if TYPE_CHECKING:
    from anchor_edge.pipeline import Pipeline


class StreamResult(NamedTuple):
    """One frame's outcome: its index and source time, when its result was ready, and the Prediction or the error.

    latency_ms: from the frame's capture here to its result. image: the BGR
    frame (None for a frame that could not be read), to draw on
    (`anchor_edge.cli.visualize.annotate`). smoothed: the smoothed class
    distribution when smoothing is on (else None), smoothed_class_id its argmax.
    """

    index: int
    timestamp_ms: float
    latency_ms: float
    prediction: Prediction | None
    image: np.ndarray | None = None
    error: str | None = None
    smoothed: np.ndarray | None = None
    smoothed_class_id: int | None = None

    def to_dict(self) -> dict:
        """One JSON line: the frame's index, times, and its prediction (or error)."""
        line: dict = {
            "frame": self.index,
            "timestamp_ms": round(self.timestamp_ms, 3),
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.prediction is None:
            return {**line, "error": self.error}
        line.update(self.prediction.to_dict())
        if self.smoothed is not None:
            line["smoothed_class_id"] = self.smoothed_class_id
            line["smoothed_score"] = float(self.smoothed[self.smoothed_class_id])
        return line


@dataclass
class StreamStats:
    """Frames classified, dropped (live sources) and failed, frames/s end to end, and capture-to-result latency."""

    frames: int = 0
    dropped: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def to_dict(self) -> dict:
        p50, p99 = self.latency_percentile(50), self.latency_percentile(99)
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames_per_s, 3),
            "latency_ms_p50": None if p50 is None else round(p50, 3),
            "latency_ms_p99": None if p99 is None else round(p99, 3),
        }

    def summary(self) -> str:
        """One line for the end of a run."""
        p50, p99 = self.latency_percentile(50), self.latency_percentile(99)
        latency = "no frames" if p50 is None else f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        return (
            f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_s:.2f} frames/s), "
            f"{self.dropped} dropped, {self.errors} unreadable; capture to result {latency}"
        )


class Smoothing:
    """Temporal smoothing of class distributions: "ema" (weight `alpha` on the newest) or "window" (last n's mean)."""

    def __init__(self, mode: str = "ema", *, alpha: float = 0.3, window: int = 5) -> None:
        if mode not in ("ema", "window"):
            raise InputError(f"smoothing must be 'ema' or 'window', got {mode!r}")
        if not 0 < alpha <= 1:
            raise InputError(f"alpha must be in (0, 1], got {alpha!r}")
        positive_int("window", window)
        self.mode, self.alpha = mode, alpha
        self._recent: deque[np.ndarray] = deque(maxlen=window)
        self._average: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        """Fold in one frame's class distribution; returns the smoothed one."""
        probs = np.asarray(probs, np.float64)
        if self.mode == "window":
            self._recent.append(probs)
            return np.mean(self._recent, axis=0)
        self._average = probs if self._average is None else self.alpha * probs + (1 - self.alpha) * self._average
        return self._average


class Stream:
    """An iterator of StreamResult over a source, with its StreamStats; a context manager that closes the source.

    Made by `Pipeline.stream`; see that method for the arguments.
    """

    def __init__(
        self, pipeline: "Pipeline", source: FrameSource, *, batch: int = 1, smoothing: Smoothing | None = None
    ) -> None:
        positive_int("batch", batch)
        if source.live and batch != 1:
            raise InputError(
                f"batch={batch} groups frames of a recorded source; {source.name} is live and always gives its "
                "newest frame alone"
            )
        self.pipeline = pipeline
        self.source = source
        self.batch = batch
        self.smoothing = smoothing
        self.stats = StreamStats()

    def __iter__(self) -> Iterator[StreamResult]:
        start = time.monotonic()
        try:
            while True:
                frames, failures = self._next_frames()
                if not frames and not failures:
                    return
                if frames:
                    predictions = self.pipeline.predict_batch([frame.image for frame in frames])
                    done = time.monotonic()
                    for frame, prediction in zip(frames, predictions):
                        yield self._result(frame, (done - frame.captured_at) * 1e3, prediction)
                yield from failures  # a failed frame ends its batch, so it comes after the frames read before it
                self.stats.seconds = time.monotonic() - start
        finally:
            self.stats.seconds = time.monotonic() - start
            self.stats.dropped = self.source.dropped

    def _next_frames(self) -> tuple[list[Frame], list[StreamResult]]:
        """Up to `batch` frames (fewer at the end); frames that cannot be read become error results."""
        frames, failures = [], []
        while len(frames) < self.batch:
            try:
                frame = self.source.read()
            except UnreadableFrame as error:
                self.stats.errors += 1
                failures.append(StreamResult(error.index, float(error.index), 0.0, None, error=str(error)))
                break
            if frame is None:
                break
            frames.append(frame)
        return frames, failures

    def _result(self, frame: Frame, latency_ms: float, prediction: Prediction) -> StreamResult:
        self.stats.frames += 1
        self.stats.latencies_ms.append(latency_ms)
        result = StreamResult(frame.index, frame.timestamp_ms, latency_ms, prediction, frame.image)
        if self.smoothing is None:
            return result
        smoothed = self.smoothing.update(prediction.class_distribution())
        return result._replace(smoothed=smoothed, smoothed_class_id=int(smoothed.argmax()))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_stream(
    pipeline: "Pipeline",
    source: "str | int | FrameSource",
    *,
    every: int = 1,
    batch: int = 1,
    smoothing: Smoothing | None = None,
    reconnects: int | None = None,
) -> Stream:
    """A Stream over `source` (a spec for `anchor_edge.video.sources.open_source`, or an open FrameSource).

    Raises:
        InputError: `every` or `reconnects` with an open FrameSource (they apply to opening a spec), or what
            `open_source` and `Stream` refuse; a source opened here is closed again.
    """
    if hasattr(source, "read"):
        if every != 1 or reconnects is not None:
            raise InputError(
                f"every={every} and reconnects={reconnects} apply to a source anchor-edge opens; {source.name} is "
                "an open FrameSource: give them where you open it, or pass its spec"
            )
        return Stream(pipeline, source, batch=batch, smoothing=smoothing)
    opened = open_source(source, every=every, reconnects=DEFAULT_RECONNECTS if reconnects is None else reconnects)
    try:
        return Stream(pipeline, opened, batch=batch, smoothing=smoothing)
    except BaseException:
        opened.close()
        raise
