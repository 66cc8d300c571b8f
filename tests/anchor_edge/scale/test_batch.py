"""`anchor-edge batch` on a local Ray cluster (loopback), on real photos: the answers in-process gives, nothing lost."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from anchor_edge import Pipeline
from anchor_edge.errors import ClusterError, InputError
from anchor_edge.method.preprocess import load_image

pytestmark = pytest.mark.timeout(300)

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def image_folder(photos, tmp_path_factory):
    """The real photos as PNG and JPEG files in nested folders, and three files no decoder can read."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "jpeg").mkdir()
    for i, (name, image) in enumerate(photos):
        path = folder / "jpeg" / f"{name}.jpg" if i % 2 else folder / f"{name}.png"
        assert cv2.imwrite(str(path), image)
    whole = cv2.imencode(".jpg", photos[0][1])[1].tobytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "garbage.png").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image suffix: never listed")
    return folder


@pytest.fixture(scope="module")
def in_process(small_bundle, image_folder):
    """path -> in-process Prediction for every readable image, one predict_batch call."""
    from anchor_edge.scale.batch import list_inputs

    paths = [p for p in list_inputs(image_folder) if os.path.basename(p) not in BAD_FILES]
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipe:
        return dict(zip(paths, pipe.predict_batch([load_image(p) for p in paths])))


BAD_FILES = {"truncated.jpg", "garbage.png", "empty.jpg"}


def read_rows(folder):
    return pd.read_parquet(folder).set_index("path")


def assert_rows_match(rows, in_process):
    for path, prediction in in_process.items():
        row = rows.loc[path]
        assert pd.isna(row["error"])
        assert (row["class_id"], row["label"], row["branch"]) == (
            prediction.class_id,
            prediction.label,
            prediction.branch,
        )
        assert row["patch_count"] == len(prediction.boxes)
        np.testing.assert_allclose(np.stack(row["boxes"]), prediction.boxes_original, atol=1e-3)
        assert row["score"] == pytest.approx(prediction.score, abs=1e-4)


def test_batch_rows_equal_in_process_predictions_and_bad_files_are_error_rows(
    ray_cluster, small_bundle, image_folder, in_process, tmp_path
):
    from anchor_edge.scale.batch import run_batch

    report = run_batch(
        small_bundle, image_folder, tmp_path, actors=2, batch_size=3, backend="onnxruntime", progress=False
    )

    rows = read_rows(tmp_path)
    assert len(rows) == len(in_process) + len(BAD_FILES) == report.written and rows.index.is_unique
    assert (report.inputs, report.skipped, report.errors) == (len(rows), 0, len(BAD_FILES))
    assert 0 < report.startup_seconds < report.seconds
    assert_rows_match(rows, in_process)
    for name in BAD_FILES:
        row = rows.loc[str(image_folder / name)]
        assert row["error"] and pd.isna(row["class_id"]) and row["boxes"] is None


def test_a_rerun_skips_finished_images_and_does_only_the_new_ones(
    ray_cluster, small_bundle, image_folder, in_process, tmp_path
):
    from anchor_edge.scale.batch import run_batch

    first = sorted(in_process)[:4]
    assert run_batch(small_bundle, first, tmp_path, backend="onnxruntime", progress=False).written == 4

    again = run_batch(
        small_bundle, image_folder, tmp_path, actors=2, batch_size=4, backend="onnxruntime", progress=False
    )

    assert (again.skipped, again.written) == (4, len(in_process) + len(BAD_FILES) - 4)
    rows = read_rows(tmp_path)
    assert rows.index.is_unique and set(rows.index) == set(in_process) | {str(image_folder / n) for n in BAD_FILES}
    assert_rows_match(rows, in_process)
    assert run_batch(small_bundle, image_folder, tmp_path, backend="onnxruntime", progress=False).written == 0


def test_an_actor_that_dies_mid_job_loses_and_duplicates_nothing(
    ray_cluster, small_bundle, image_folder, in_process, tmp_path
):
    from anchor_edge.scale.batch import BatchPredictor, run_batch

    victim = sorted(in_process)[len(in_process) // 2]
    marker = tmp_path / "died-once"

    class DiesOnce(BatchPredictor):
        """Kills its own process the first time it is handed the victim's batch."""

        def __call__(self, batch):
            if victim in [os.path.abspath(p) for p in batch["path"]] and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().__call__(batch)

    output = tmp_path / "out"
    report = run_batch(
        small_bundle,
        image_folder,
        output,
        actors=2,
        batch_size=2,
        backend="onnxruntime",
        predictor=DiesOnce,
        progress=False,
    )

    assert marker.exists(), "the actor never died: the test did not test anything"
    rows = read_rows(output)
    assert rows.index.is_unique and len(rows) == report.written == len(in_process) + len(BAD_FILES)
    assert_rows_match(rows, in_process)


def test_a_file_removed_before_it_is_read_is_an_error_row(ray_cluster, small_bundle, in_process, tmp_path):
    from anchor_edge.scale.batch import VANISHED, run_batch

    present = sorted(in_process)[:2]
    missing = str(tmp_path / "removed.jpg")
    report = run_batch(small_bundle, [*present, missing], tmp_path / "out", backend="onnxruntime", progress=False)

    rows = read_rows(tmp_path / "out")
    assert (report.written, report.errors) == (3, 1)
    assert rows.loc[missing, "error"] == VANISHED
    assert_rows_match(rows, {p: in_process[p] for p in present})


def test_interrupted_writer_keeps_every_whole_part_and_no_torn_file(tmp_path):
    from anchor_edge.scale.results import PartWriter, error_row, finished_paths

    writer = PartWriter(tmp_path, rows_per_part=2)
    with pytest.raises(KeyboardInterrupt):
        try:
            writer.add([error_row(f"/img/{i}.jpg", "x") for i in range(5)])  # one part of 5: written at once
            writer.add([error_row("/img/5.jpg", "x")])  # buffered
            raise KeyboardInterrupt
        finally:
            writer.close()

    assert finished_paths(tmp_path) == {f"/img/{i}.jpg" for i in range(6)}
    assert len(list(tmp_path.glob("part-*.parquet"))) == 2 and not list(tmp_path.glob(".*"))


def test_an_output_folder_with_a_foreign_part_file_is_refused_before_any_work(tmp_path):
    from anchor_edge.scale.results import finished_paths

    (tmp_path / "part-0.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="part-0.parquet"):
        finished_paths(tmp_path)


def test_an_output_folder_of_another_bundles_job_is_refused(small_bundle, tmp_path):
    from anchor_edge.scale.batch import job_identity
    from anchor_edge.scale.results import JOB_FILE, claim_output

    job = job_identity(small_bundle)
    assert set(job["models"]) == {"anchornet", "downstream"} and len(job["models"]["downstream"]) == 64
    claim_output(tmp_path, job)
    claim_output(tmp_path, job)  # the same models: a resume
    other = {**job, "models": {**job["models"], "downstream": "0" * 64}}
    voted = {**job, "decision": {**job["decision"], "anchor_vote": 2.0}}  # the same models, another class rule
    assert job["decision"]["anchor_vote"] == 0.0
    for foreign in (other, voted):
        with pytest.raises(InputError, match="holds the results of another job"):
            claim_output(tmp_path, foreign)
    assert json.loads((tmp_path / JOB_FILE).read_text()) == job


def test_list_inputs_takes_files_folders_and_globs(image_folder):
    from anchor_edge.scale.batch import list_inputs

    everything = list_inputs(image_folder)
    assert len(everything) == len(list(image_folder.rglob("*.*"))) - 1  # all but notes.txt
    assert list_inputs(str(image_folder / "jpeg" / "*.jpg")) == sorted(
        str(p) for p in (image_folder / "jpeg").glob("*.jpg")
    )
    assert list_inputs(image_folder / "garbage.png") == [str(image_folder / "garbage.png")]
    with pytest.raises(InputError, match="no image files"):
        list_inputs(image_folder / "nothing-*.jpg")


@pytest.mark.parametrize(
    ("actors", "threads", "cpus", "expected"),
    [
        (2, 1, 2.0, 0.75),  # two 1-thread actors on 2 CPUs: 1.5 CPUs between them, 0.5 left for reads
        (1, 1, 2.0, 1.0),  # room enough: the actor asks for its threads
        (4, 2, 16.0, 2.0),
        (3, 4, 8.0, 2.5),  # 7.5 CPUs of room shared by three
    ],
)
def test_actor_cpu_requests_always_leave_room_for_the_read_tasks(actors, threads, cpus, expected):
    from anchor_edge.scale.batch import READ_RESERVE_CPUS, actor_cpus

    assert actor_cpus(actors, threads, cpus) == pytest.approx(expected)
    assert actors * actor_cpus(actors, threads, cpus) <= cpus - READ_RESERVE_CPUS


def test_actor_cpu_requests_refuse_impossible_pools():
    from anchor_edge.scale.batch import actor_cpus

    with pytest.raises(InputError, match="too few"):
        actor_cpus(1, 1, 0.5)
    with pytest.raises(InputError, match="actors must be an integer >= 1, got 0"):
        actor_cpus(0, 1, 4.0)


def test_run_batch_without_a_cluster_says_to_start_one(small_bundle, tmp_path, monkeypatch):
    from anchor_edge.scale import batch

    class NoCluster:
        @staticmethod
        def is_initialized():
            return False

    monkeypatch.setattr(batch, "import_ray", lambda: NoCluster)
    with pytest.raises(ClusterError, match="cluster.start"):
        batch.run_batch(small_bundle, [str(tmp_path / "a.jpg")], tmp_path)


def test_batch_command_writes_the_rows_and_says_what_it_did(
    ray_cluster, small_bundle, image_folder, in_process, tmp_path, capsys
):
    from anchor_edge.cli import main

    argv = [
        "batch",
        "--bundle",
        str(small_bundle),
        "--input",
        str(image_folder / "**" / "*.jpg"),
        "--output",
        str(tmp_path),
        "--actors",
        "2",
        "--batch-size",
        "2",
        "--backend",
        "onnxruntime",
    ]
    assert main(argv) == 0

    jpegs = {p for p in in_process if p.endswith(".jpg")}
    rows = read_rows(tmp_path)
    assert set(rows.index) == jpegs | {str(image_folder / "truncated.jpg"), str(image_folder / "empty.jpg")}
    assert_rows_match(rows, {p: in_process[p] for p in jpegs})
    out = capsys.readouterr().out
    assert (
        f"{len(rows)} rows written to {tmp_path} (2 errors)" in out
        and f"0 of {len(rows)} images were done before" in out
    )
    assert ray_cluster.started_here and __import__("ray").is_initialized(), (
        "the command stopped a cluster it only joined"
    )
