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
from collections.abc import Mapping, Sequence

import numpy as np

from anchor_edge.backends.base import Runner


class StageClock:
    """Milliseconds per stage and per model for one call."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.models: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        """A context manager that times its block and adds it to stage `name`."""
        return _Stage(self.stages, name)

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


class _Stage:
    """One timed block of a `StageClock`.

    A plain class, not a `contextlib.contextmanager` generator: right after a
    model run the interpreter's caches are cold, and there the generator's
    machinery cost about 5 us per stage boundary (half a dozen per image),
    time the method itself does not need (docs/decisions/021-host-steps-after-a-model-run.md).
    """

    __slots__ = ("_stages", "_name", "_start")

    def __init__(self, stages: dict[str, float], name: str) -> None:
        self._stages, self._name, self._start = stages, name, 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        elapsed = (time.perf_counter() - self._start) * 1e3
        self._stages[self._name] = self._stages.get(self._name, 0.0) + elapsed
