"""TrtRunner's control flow, run against the shared stand-in for tensorrt and pycuda (tests/fake_tensorrt.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from anchor_edge.backends.trt.runner import TrtRunner
from anchor_edge.errors import BackendError
from tests.fake_tensorrt import CLASSES, clear_caches, install, reference_logits


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The shared fake TensorRT (tests/fake_tensorrt.py); returns (cuda, engine, engine path)."""
    yield install(monkeypatch, tmp_path)
    clear_caches()


def images(batch, size, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("pinned", [True, False])
@pytest.mark.parametrize("size, batch", [(63, 1), (95, 32), (111, 70), (224, 8), (224, 19)])
def test_outputs_match_the_reference_across_chunks(fake, pinned, size, batch):
    cuda, engine, path = fake
    with TrtRunner(path, pinned_outputs=pinned) as runner:
        feeds = images(batch, size)
        logits = runner.run({"image": feeds})["logits"]
    np.testing.assert_allclose(logits, reference_logits(feeds), rtol=1e-6, atol=1e-6)
    assert cuda.depth_here() == 0


def test_seventy_patches_run_as_32_32_6(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        profile_setup = len(engine.shapes_set)  # load time sets every profile's maximum once
        runner.run({"image": images(70, 111)})
    assert [shape[0] for shape in engine.shapes_set[profile_setup:]] == [32, 32, 6]
    assert {shape[2] for shape in engine.shapes_set[profile_setup:]} == {111}


def test_timings_are_summed_over_chunks(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        runner.run({"image": images(70, 63)})  # 3 chunks, each fake event interval 0.5 ms
        assert runner.last_timings == {"h2d_ms": 1.5, "compute_ms": 1.5, "d2h_ms": 1.5}


def test_buffers_sized_for_the_largest_profile_and_allocated_once(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        # image: max over profiles of batch*3*s*s*4 bytes = 8*3*224*224*4 (224 profile) = 4,816,896
        # (the 111 profile is 32*3*111*111*4 = 4,731,264); logits: 32*10*4 = 1,280.
        assert sorted(len(a) for a in cuda.allocations.values()) == [1_280, 4_816_896]
        for size in (63, 95, 111, 224, 63):
            runner.run({"image": images(3, size)})
        assert len(cuda.allocations) == 2


def test_returned_arrays_do_not_alias_the_pinned_buffers(fake):
    cuda, engine, path = fake
    with TrtRunner(path, pinned_outputs=True) as runner:
        first = runner.run({"image": images(2, 63, seed=1)})["logits"].copy()
        kept = runner.run({"image": images(2, 63, seed=1)})["logits"]
        runner.run({"image": images(2, 63, seed=2)})
    np.testing.assert_array_equal(kept, first)


def test_specs_name_the_dynamic_axes(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        assert [tuple(s) for s in runner.inputs] == [("image", ("batch", 3, "dim2", "dim3"), "float32")]
        assert [tuple(s) for s in runner.outputs] == [("logits", ("batch", CLASSES), "float32")]


def test_empty_batch(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        assert runner.run({"image": images(0, 95)})["logits"].shape == (0, CLASSES)


def test_unplanned_size_and_wrong_dtype_are_refused(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        with pytest.raises(BackendError, match=r"downstream\.engine input 'image'.*\(1, 3, 100, 100\)"):
            runner.run({"image": images(1, 100)})
        with pytest.raises(BackendError, match="takes float32, got float64"):
            runner.run({"image": images(1, 63).astype(np.float64)})
    assert cuda.depth_here() == 0


def test_false_from_set_input_shape_names_engine_and_tensor(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        engine.refuse_shapes = True
        with pytest.raises(BackendError, match=r"set input 'image' to shape \(2, 3, 63, 63\) for .*downstream\.engine"):
            runner.run({"image": images(2, 63)})
        assert cuda.depth_here() == 0  # the context was popped despite the error


def test_false_from_execute_is_an_error(fake):
    cuda, engine, path = fake
    with TrtRunner(path) as runner:
        engine.fail_execution = True
        with pytest.raises(BackendError, match=r"failed to run on a batch of shape \(2, 3, 95, 95\)"):
            runner.run({"image": images(2, 95)})
    assert cuda.depth_here() == 0


def test_undeserializable_engine_releases_the_cuda_context(fake):
    cuda, engine, path = fake
    path.write_bytes(b"garbage")
    with pytest.raises(BackendError, match="cannot deserialize.*rebuild it on this machine"):
        TrtRunner(path)
    assert (cuda.retained, cuda.detached, cuda.depth_here()) == (1, 1, 0)


def test_close_frees_every_buffer_once_and_blocks_further_runs(fake):
    cuda, engine, path = fake
    runner = TrtRunner(path, pinned_outputs=True)
    runner.close()
    runner.close()
    assert sorted(map(str, cuda.freed)) == sorted(map(str, [1_280, 4_816_896, ("pinned", 1_280)]))
    assert (cuda.retained, cuda.detached) == (1, 1)
    with pytest.raises(BackendError, match="closed"):
        runner.run({"image": images(1, 63)})


def test_concurrent_calls_each_push_the_context_in_their_own_thread(fake):
    cuda, engine, path = fake
    results, errors = {}, []
    with TrtRunner(path) as runner:

        def work(size):
            try:
                feeds = images(5, size, seed=size)
                results[size] = (runner.run({"image": feeds})["logits"], reference_logits(feeds), cuda.depth_here())
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(size,)) for size in (63, 95, 111, 224)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for logits, expected, depth_after in results.values():
        np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
        assert depth_after == 0
