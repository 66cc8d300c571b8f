"""StageClock: stages add up, total is their sum, model and device times are kept apart from the total."""

from __future__ import annotations

import time

import numpy as np
import pytest

from anchor_edge.backends.trt.runner import TrtRunner
from anchor_edge.timing import StageClock
from tests.fake_tensorrt import clear_caches, install


def test_stages_add_up_in_first_run_order_and_total_is_their_sum():
    clock = StageClock()
    for stage in ("crop", "downstream_63", "crop"):
        with clock.stage(stage):
            time.sleep(0.002)
    timings = clock.timings()
    assert list(timings) == ["crop", "downstream_63", "total"]
    assert timings["crop"] >= 4.0 and timings["downstream_63"] >= 2.0
    assert timings["total"] == pytest.approx(timings["crop"] + timings["downstream_63"])


def test_a_stage_that_raises_is_still_timed():
    clock = StageClock()
    with pytest.raises(ZeroDivisionError), clock.stage("decision"):
        1 / 0
    assert "decision" in clock.timings()


def test_model_and_device_times_of_the_fake_tensorrt_are_summed_and_left_out_of_the_total(monkeypatch, tmp_path):
    _, _, engine = install(monkeypatch, tmp_path)
    clock = StageClock()
    batch = np.zeros((70, 3, 63, 63), np.float32)  # 3 chunks of 32, 32, 6; each fake event interval is 0.5 ms
    with TrtRunner(engine) as runner, clock.stage("downstream_63"):
        for _ in range(2):
            clock.run("downstream", runner, {"image": batch}, ["logits"])
    clear_caches()
    timings = clock.timings()
    assert {key: timings[key] for key in ("downstream_h2d_ms", "downstream_compute_ms", "downstream_d2h_ms")} == {
        "downstream_h2d_ms": 3.0,
        "downstream_compute_ms": 3.0,
        "downstream_d2h_ms": 3.0,
    }
    assert 0 < timings["model_downstream"] <= timings["downstream_63"] == timings["total"]


def test_threads_sharing_a_runner_each_read_the_device_times_of_their_own_run(monkeypatch, tmp_path):
    import threading

    _, _, engine = install(monkeypatch, tmp_path)
    with TrtRunner(engine) as runner:
        runner.run({"image": np.zeros((70, 3, 63, 63), np.float32)}, ["logits"])  # 3 chunks of 0.5 ms each
        seen = []
        other = threading.Thread(
            target=lambda: seen.append(
                runner.run({"image": np.zeros((1, 3, 63, 63), np.float32)}) and runner.last_timings
            )
        )
        other.start()
        other.join()
        mine = runner.last_timings  # read after the other thread's run, as a StageClock may be
    clear_caches()
    assert seen == [{"h2d_ms": 0.5, "compute_ms": 0.5, "d2h_ms": 0.5}]
    assert mine == {"h2d_ms": 1.5, "compute_ms": 1.5, "d2h_ms": 1.5}


def test_prediction_timings_hold_the_model_times(plain, images):
    timings = plain.predict_batch(images[:2])[0].timings
    stages = [key for key in timings if key != "total" and not key.startswith("model_")]
    assert timings["total"] == pytest.approx(sum(timings[key] for key in stages))
    assert 0 < timings["model_anchornet"] <= timings["anchornet"]
    assert 0 < timings["model_downstream"] <= sum(timings[k] for k in stages if k.startswith("downstream_"))
