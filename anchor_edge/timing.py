"""Where a `predict_batch` call spends its time: per stage of the method, and inside each model's runs.

A `StageClock` lives for one call, so a Pipeline stays free of per-call
state and safe to share between threads. Stages add up (early exit crops
and classifies in rounds, each round adding to "crop" and "downstream_<size>");
"total" is the sum of the stages. Model time is measured around each
runner's `run` ("model_anchornet", "model_downstream") together with the
device times a runner reports (TensorRT's `last_timings`: h2d, compute,
d2h, as "<role>_h2d_ms", ...); it lies inside the stages and is not added to
the total, so a benchmark reads host overhead as total minus model time
without wrapping the pipeline's runners.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from anchor_edge.backends.base import Runner


class StageClock:
    """Milliseconds per stage and per model for one call."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.models: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block and add it to stage `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - start) * 1e3

    def run(
        self, role: str, runner: Runner, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """`runner.run(feeds, output_names)`; its time adds to "model_<role>", its device times to "<role>_<key>"."""
        start = time.perf_counter()
        outputs = runner.run(feeds, output_names)
        self._add(f"model_{role}", (time.perf_counter() - start) * 1e3)
        for key, ms in runner.last_timings.items():
            self._add(f"{role}_{key}", ms)
        return outputs

    def timings(self) -> dict[str, float]:
        """Stages in the order they first ran, "total" (their sum), then the model times."""
        return {**self.stages, "total": sum(self.stages.values()), **self.models}

    def _add(self, key: str, ms: float) -> None:
        self.models[key] = self.models.get(key, 0.0) + ms
