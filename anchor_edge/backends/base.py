"""The one interface every inference backend implements: names in, arrays out.

Modelled on ONNX Runtime's own API (`run(output_names, feeds)`), so the
pipeline never knows which backend runs a model. A runner is created once per
model, is safe to call from several threads, and is a context manager so its
resources (sessions, device buffers) are released deterministically.
"""

from __future__ import annotations

import abc
import threading
from typing import Mapping, NamedTuple, Sequence

import numpy as np


class TensorSpec(NamedTuple):
    """Name, shape (ints, or strings for dynamic axes) and dtype of one model input or output."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


class Runner(abc.ABC):
    """Runs one model. Subclasses load it in `__init__`, set `inputs` and `outputs`, and implement `_run`."""

    #: Short backend name shown in logs and Prediction output ("onnxruntime", "openvino", "tensorrt").
    backend: str = ""
    #: The model's inputs and outputs, in graph order.
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._closed = False
        self._thread_timings = threading.local()

    @property
    def last_timings(self) -> dict[str, float]:
        """Device milliseconds of this thread's latest `run`, where the backend measures them (TensorRT: h2d,
        compute, d2h); {} elsewhere. Per thread, so threads sharing a runner never read each other's."""
        return getattr(self._thread_timings, "timings", {})

    def _record_timings(self, timings: dict[str, float]) -> None:
        """Keep a run's device times for `last_timings` in the thread that ran it."""
        self._thread_timings.timings = timings

    @abc.abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        """Backend-specific inference on validated feeds."""

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on `feeds` (input name -> array) and return {output name: array}.

        Args:
            feeds: one array per model input, keyed by input name.
            output_names: the outputs wanted; all of them when None.

        Returns:
            A dict from output name to a numpy array owned by the caller.

        Example:
            >>> probs = runner.run({"image": batch}, ["probs"])["probs"]
        """
        from anchor_edge.errors import BackendError

        if self._closed:
            raise BackendError(f"{self.backend} runner for {self.model_name!r} is closed; create a new Pipeline")
        expected = {spec.name for spec in self.inputs}
        if set(feeds) != expected:
            raise BackendError(f"{self.model_name!r} takes inputs {sorted(expected)}, got {sorted(feeds)}")
        names = [spec.name for spec in self.outputs] if output_names is None else list(output_names)
        unknown = set(names) - {spec.name for spec in self.outputs}
        if unknown:
            raise BackendError(
                f"{self.model_name!r} has no output(s) {sorted(unknown)}; it has {[s.name for s in self.outputs]}"
            )
        return dict(zip(names, self._run(feeds, names)))

    def describe(self) -> str:
        """The backend setting this runner runs with, for reports and verify records ("onnxruntime:cpu", "tensorrt")."""
        return self.backend

    def close(self) -> None:
        """Release the backend's resources; further `run` calls raise BackendError."""
        self._closed = True

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
