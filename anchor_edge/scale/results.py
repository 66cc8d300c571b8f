"""A batch job's results: one Parquet row per input image, in part files that appear whole or not at all.

The output folder holds `part-*.parquet` files with one schema (`SCHEMA`);
read it with `pandas.read_parquet(folder)` or `ray.data.read_parquet(folder)`.
An image that cannot be decoded is a row with `error` set and the other
fields null, so a job never fails on bad data and every input is accounted
for. Part files are written through a temporary file and renamed, so a job
stopped at any moment leaves only whole parts; the paths in them are what a
re-run skips (`finished_paths`). `_job.json` names the models that wrote the
rows (`claim_output`), so a re-run with another bundle cannot mix its answers
in; its leading underscore keeps Parquet readers of the folder off it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.errors import InputError
from anchor_edge.prediction import Prediction

#: path: the input file, absolute; boxes: [x0, y0, x1, y1] patch boxes in the original image's pixels.
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("class_id", pa.int32()),
        ("label", pa.string()),
        ("score", pa.float32()),
        ("branch", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("patch_count", pa.int32()),
        ("error", pa.string()),
    ]
)
PART_GLOB = "part-*.parquet"
#: Which models a results folder's rows come from.
JOB_FILE = "_job.json"
log = logging.getLogger("anchor_edge")


def prediction_row(path: str, prediction: Prediction) -> dict:
    """The row of one classified image."""
    return {
        "path": path,
        "class_id": prediction.class_id,
        "label": prediction.label,
        "score": prediction.score,
        "branch": prediction.branch,
        "boxes": prediction.boxes_original.astype(float).tolist(),
        "patch_count": len(prediction.boxes),
        "error": None,
    }


def error_row(path: str, reason: str) -> dict:
    """The row of an image that could not be classified, with the reason."""
    return {name: None for name in SCHEMA.names} | {"path": path, "error": reason}


def to_table(rows: Iterable[dict]) -> pa.Table:
    """Rows as an Arrow table of `SCHEMA`."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def finished_paths(folder: Path) -> set[str]:
    """The input paths that already have a row in `folder`'s part files (none if the folder is new).

    Raises:
        InputError: a part file that is not Parquet of this schema (the folder is not a batch job's output).
    """
    done: set[str] = set()
    for part in sorted(folder.glob(PART_GLOB)):
        try:
            paths = pq.read_table(part, columns=["path"]).column("path")
        except (pa.ArrowException, KeyError) as error:
            raise InputError(
                f"{part} is not a part file of an anchor-edge batch job ({error}); use another --output"
            ) from error
        done.update(paths.to_pylist())
    return done


def claim_output(folder: Path, job: dict) -> None:
    """Record in `folder` which models write its rows (`job`: JSON-ready), or refuse a folder other models wrote.

    Raises:
        InputError: the folder's rows come from another job's models (resuming would mix two models' answers).
    """
    path = folder / JOB_FILE
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != job:
            raise InputError(
                f"{folder} holds the results of another job ({json.dumps(recorded)}), not of {json.dumps(job)}; "
                "give another --output, or the same bundle to resume that job"
            )
        return
    if any(folder.glob(PART_GLOB)):
        log.warning("%s has results but no %s (an earlier version's job): resuming it as this job's", folder, JOB_FILE)
    write_atomically(path, (json.dumps(job, indent=2) + "\n").encode())


class PartWriter:
    """Buffers rows and writes them as whole part files, every `rows_per_part` rows or `seconds_per_part` seconds.

    `close()` writes what is buffered, so results finished before an
    interruption are kept when the caller closes in a `finally`.
    """

    def __init__(self, folder: Path, *, rows_per_part: int = 10_000, seconds_per_part: float = 60.0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.rows_per_part = rows_per_part
        self.seconds_per_part = seconds_per_part
        self.written = 0
        self._run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._parts = 0
        self._rows: list[dict] = []
        self._last_write = time.monotonic()

    def add(self, rows: Iterable[dict]) -> None:
        self._rows.extend(rows)
        full = len(self._rows) >= self.rows_per_part
        if full or time.monotonic() - self._last_write >= self.seconds_per_part:
            self._write()

    def close(self) -> None:
        self._write()

    def _write(self) -> None:
        self._last_write = time.monotonic()
        if not self._rows:
            return
        sink = pa.BufferOutputStream()
        pq.write_table(to_table(self._rows), sink)
        write_atomically(self.folder / f"part-{self._run}-{self._parts:05d}.parquet", sink.getvalue())
        self._parts += 1
        self.written += len(self._rows)
        self._rows = []
