"""The offline job: classify a large set of image files on a Ray cluster and write the results to Parquet.

Ray Data reads the files (light read tasks), a pool of actors each holding
one `Pipeline` classifies them with `predict_batch`, and this process writes
the rows (`anchor_edge.scale.results`). What that buys:

- Bad data never fails the job: an image that cannot be decoded becomes an
  error row; a file that vanishes before it is read does too.
- Nothing is lost or duplicated: Ray restarts an actor that dies and retries
  its batch (the failed attempt's output is never emitted); rows are keyed by
  path and written once; parts appear whole, so a re-run over the same output
  skips what is done and redoes only what was in flight.
- The read tasks can always run: the actors' CPU requests are scaled so that
  `READ_RESERVE_CPUS` stays free (a pool that takes every CPU deadlocks the
  job, since no read task can be placed). ONNX Runtime ignores
  OMP_NUM_THREADS, so each actor's intra-op threads are passed explicitly.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.codec import encode
from anchor_edge.checks import positive_int
from anchor_edge.errors import AnchorEdgeError, ClusterError, InputError
from anchor_edge.scale.cluster import import_ray
from anchor_edge.scale.results import (
    PartWriter,
    claim_output,
    error_row,
    finished_paths,
    prediction_row,
    to_table,
)
from anchor_edge.video.sources import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from anchor_edge.backends import BackendOptions

log = logging.getLogger("anchor_edge")

#: CPUs each read task asks for, and the CPUs the actor pool leaves for them.
READ_TASK_CPUS = 0.25
READ_RESERVE_CPUS = 0.5
VANISHED = "the file could not be read (it was removed or is not readable)"


@dataclass(frozen=True)
class BatchReport:
    """What a job did: inputs found, skipped (done before), rows written now (errors among them), seconds.

    startup_seconds: from the start until the first results came back (listing,
    actor creation, bundle loading, the first batch); the rest is steady work.
    """

    inputs: int
    skipped: int
    written: int
    errors: int
    seconds: float
    startup_seconds: float
    output: Path

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class BatchPredictor:
    """One actor's pipeline: a batch of {path, bytes} in, a table of result rows out.

    Each image is decoded on its own, so one bad file is one error row and the
    rest of its batch is classified together.
    """

    def __init__(
        self,
        bundle: str,
        *,
        threads: int,
        backend: str | BackendOptions = "auto",
        backend_keywords: Mapping[str, Any] | None = None,
    ) -> None:
        from anchor_edge.scale.member import open_member_pipeline

        self.pipeline = open_member_pipeline(
            bundle, threads=threads, backend=backend, backend_keywords=backend_keywords
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from anchor_edge.method.preprocess import load_image

        rows: dict[int, dict] = {}
        images, positions = [], []
        for position, (path, data) in enumerate(zip(batch["path"], batch["bytes"])):
            try:
                images.append(load_image(bytes(data)))
                positions.append(position)
            except InputError as error:
                rows[position] = error_row(_absolute(path), str(error))
        for position, prediction in zip(positions, self.pipeline.predict_batch(images)):
            rows[position] = prediction_row(_absolute(batch["path"][position]), prediction)
        return to_table(rows[position] for position in sorted(rows))


def list_inputs(pattern: str | Path) -> list[str]:
    """Absolute paths of the images named by a file, a folder (searched recursively) or a glob, sorted.

    Raises:
        InputError: nothing matches.
    """
    text = str(pattern)
    if os.path.isdir(text):
        found = [str(p) for p in Path(text).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    elif os.path.isfile(text):
        found = [text]
    else:
        found = [p for p in glob.glob(text, recursive=True) if os.path.isfile(p)]
    if not found:
        raise InputError(
            f"no image files at {text!r}: give a file, a folder of images or a glob such as 'photos/**/*.jpg'"
        )
    return sorted({_absolute(p) for p in found})


def actor_cpus(actors: int, threads: int, cluster_cpus: float) -> float:
    """The CPUs each actor asks Ray for: its threads, less where needed to leave READ_RESERVE_CPUS free.

    Raises:
        InputError: the cluster is too small to hold `actors` actors beside the read tasks.
    """
    positive_int("actors", actors)
    positive_int("threads per actor", threads)
    room = cluster_cpus - READ_RESERVE_CPUS
    if room <= 0:
        raise InputError(f"the cluster has {cluster_cpus:g} CPUs: too few to run actors beside the read tasks")
    return min(float(threads), room / actors)


def run_batch(
    bundle: str | Path,
    inputs: str | Path | list[str],
    output: str | Path,
    *,
    actors: int = 1,
    threads_per_actor: int = 1,
    batch_size: int = 16,
    gpus_per_actor: float = 0.0,
    backend: str | BackendOptions = "auto",
    backend_keywords: Mapping[str, Any] | None = None,
    predictor: Callable[..., Callable[[dict[str, np.ndarray]], pa.Table]] = BatchPredictor,
    progress: bool = True,
    rows_per_part: int = 10_000,
) -> BatchReport:
    """Classify every image of `inputs` not yet in `output` on the connected Ray cluster (see cluster.start).

    Args:
        bundle: the bundle directory; every actor must see it at this path
            (shared storage on a multi-node cluster, docs/scale.md).
        inputs: a file, folder or glob (see list_inputs), or a list of paths.
        output: the results folder; rows already there are skipped.
        actors, threads_per_actor: the pool size and each actor's threads (its CPU
            reservation, and the backend's threads where it takes them).
        batch_size: images per `predict_batch` call.
        gpus_per_actor: GPUs each actor reserves (a GPU node then runs its own engines).
        backend, backend_keywords: each actor's `Pipeline.from_bundle(bundle, backend=..., **backend_keywords)`.
        predictor: the actor class (a BatchPredictor or one with its call signature).

    Raises:
        ClusterError: no Ray cluster is connected.
        InputError: no inputs, a bad size, an output folder that is not a job's or holds another bundle's results.
        BundleError: the bundle is missing or fails its checksums.
    """
    ray = import_ray()
    if not ray.is_initialized():
        raise ClusterError("no Ray cluster is connected: call anchor_edge.scale.cluster.start() first")
    positive_int("batch_size", batch_size)
    started = time.perf_counter()
    output = Path(output)
    paths = sorted({_absolute(p) for p in inputs}) if isinstance(inputs, list) else list_inputs(inputs)
    done = finished_paths(output)
    claim_output(output, job_identity(bundle))
    todo = [p for p in paths if p not in done]
    writer = PartWriter(output, rows_per_part=rows_per_part)
    errors, first_results = 0, time.perf_counter()
    if todo:
        cpus = actor_cpus(actors, threads_per_actor, float(ray.cluster_resources().get("CPU", 0)))
        results = ray.data.read_binary_files(
            todo, include_paths=True, ignore_missing_paths=True, num_cpus=READ_TASK_CPUS
        ).map_batches(
            predictor,
            fn_constructor_args=(str(bundle),),
            fn_constructor_kwargs={
                "threads": threads_per_actor,
                "backend": backend,
                "backend_keywords": backend_keywords,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=cpus,
            num_gpus=gpus_per_actor,
        )
        errors, first_results = _collect(results, set(todo), writer, progress)
    finished = time.perf_counter()
    report = BatchReport(
        len(paths), len(paths) - len(todo), writer.written, errors, finished - started, first_results - started, output
    )
    log.info(
        "batch: %d images, %d skipped, %d written (%d errors) in %.1f s",
        report.inputs,
        report.skipped,
        report.written,
        report.errors,
        report.seconds,
    )
    return report


def job_identity(bundle: str | Path) -> dict:
    """What a job's rows depend on: the bundle's two ONNX models (sha256), the LSP preset it runs and its decision
    (votes, branch rule, heatmap, AnchorNet's vote: the same models under another rule give other classes)."""
    loaded = load_bundle(bundle)
    return {"models": loaded.model_sha256s, "preset": str(loaded.preset), "decision": encode(loaded.manifest.decision)}


def quiet_ray_data() -> None:
    """Turn off Ray Data's progress lines and info logs in this process, for callers that show their own progress."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _collect(results, todo: set[str], writer: PartWriter, progress: bool) -> tuple[int, float]:
    """Write each path's first row, then an error row for every path Ray never returned.

    Returns the error count and when (perf_counter) the first results arrived.
    """
    from tqdm import tqdm

    pending, errors, first_results = set(todo), 0, None
    try:
        with tqdm(total=len(todo), unit="image", disable=None if progress else True) as bar:
            for table in results.iter_batches(batch_format="pyarrow", batch_size=None):
                first_results = first_results or time.perf_counter()
                rows = []
                for row in table.to_pylist():
                    if row["path"] in pending:  # a path's first row only, even within one table
                        pending.discard(row["path"])
                        rows.append(row)
                errors += sum(row["error"] is not None for row in rows)
                writer.add(rows)
                bar.update(len(rows))
            vanished = [error_row(path, VANISHED) for path in sorted(pending)]
            writer.add(vanished)
            errors += len(vanished)
            bar.update(len(vanished))
    except Exception as error:  # a Ray task that failed for good; the rows written so far stay
        if isinstance(error, AnchorEdgeError):
            raise
        raise ClusterError(
            f"the batch job failed: {error}; the finished rows are kept, run it again to go on"
        ) from error
    finally:
        writer.close()
    return errors, first_results or time.perf_counter()


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))
