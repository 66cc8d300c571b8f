"""The checks at the runtime's doors: Runner.run's names, a closed runner, the Pipeline's own arguments."""

from __future__ import annotations

import numpy as np
import pytest

from anchor_edge import BackendError, InputError, Pipeline
from anchor_edge.backends.options import open_both
from anchor_edge.backends.ort import OrtRunner
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.choices import Role
from anchor_edge.method.lsp import PRESETS


@pytest.fixture()
def runner(small_bundle):
    with OrtRunner(load_bundle(small_bundle).path(Role.DOWNSTREAM), threads=1) as opened:
        yield opened


def test_run_refuses_wrong_input_and_output_names(runner):
    batch = np.zeros((1, 3, 63, 63), np.float32)
    assert runner.run({"image": batch})["logits"].shape == (1, 10)
    with pytest.raises(BackendError, match=r"takes inputs \['image'\], got \['pixels'\]"):
        runner.run({"pixels": batch})
    with pytest.raises(BackendError, match=r"has no output\(s\) \['probs'\]; it has \['logits'\]"):
        runner.run({"image": batch}, ["probs"])


def test_a_closed_runner_refuses_to_run(runner):
    runner.close()
    with pytest.raises(BackendError, match="is closed"):
        runner.run({"image": np.zeros((1, 3, 63, 63), np.float32)})


@pytest.fixture(scope="module")
def opened(small_bundle):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipeline:
        yield pipeline


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lsp": {63: PRESETS["visual"][63]}, "vote_min": 2}, r"missing for patch size\(s\) \[95, 111\]"),
        ({"lsp": PRESETS["visual"], "vote_min": 0}, "vote_min must be 1, 2 or 3"),
        ({"lsp": PRESETS["visual"], "vote_min": 4}, "vote_min must be 1, 2 or 3"),
        ({"lsp": PRESETS["visual"], "vote_min": 2.5}, "vote_min must be 1, 2 or 3, got 2.5"),
        ({"lsp": PRESETS["visual"], "vote_min": "2"}, "vote_min must be 1, 2 or 3, got '2'"),
        # Settings for a size no branch has would be unused; a bad value would fail only on the first image.
        ({"lsp": {**PRESETS["visual"], 47: PRESETS["visual"][63]}, "vote_min": 2}, r"patch size\(s\) \[47\], which no"),
        (
            {"lsp": {**PRESETS["visual"], 63: (0, 0.3, 0.05)}, "vote_min": 2},
            "max_patches must be an integer >= 1, got 0",
        ),
        (
            {"lsp": {**PRESETS["visual"], 95: (3, 1.5, 0.04)}, "vote_min": 2},
            r"iou_threshold must be a number in \(0, 1\]",
        ),
        ({"lsp": {**PRESETS["visual"], 111: (2, 0.3)}, "vote_min": 2}, "for patch size 111 must be .max_patches, iou"),
        ({"lsp": PRESETS["visual"], "vote_min": 2, "max_batch": 0}, "max_batch must be an integer >= 1, got 0"),
    ],
)
def test_the_constructor_refuses_bad_arguments(opened, kwargs, message):
    with pytest.raises(InputError, match=message):
        Pipeline(opened.bundle, opened.anchornet, opened.downstream, **kwargs)


def test_from_bundle_vote_min_reaches_the_decision(small_bundle, photos):
    # vote_min 3 is the paper's literal rule: the most confident branch decides unless all three agree.
    images = [image for _, image in photos]
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, vote_min=3) as literal:
        assert literal.vote_min == 3
        got = literal.predict_batch(images)
    split = 0
    for prediction in got:
        probs = prediction.branch_probs
        tops = probs.argmax(axis=1)
        if len(set(tops.tolist())) > 1:  # no unanimity: the most confident branch's class
            split += 1
            assert prediction.anchor_class == int(tops[probs.max(axis=1).argmax()])
    assert split >= 1, "every photo was unanimous: the test proves nothing"
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as default:
        assert default.vote_min == load_bundle(small_bundle).vote_min == 2


def test_from_bundle_closes_both_runners_when_an_argument_is_refused(small_bundle, monkeypatch):
    closed = []
    monkeypatch.setattr(OrtRunner, "close", lambda self: closed.append(self.model_name))
    with pytest.raises(InputError, match="max_batch"):
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1, max_batch=0)
    assert sorted(closed) == ["anchornet.onnx", "downstream.onnx"]


def test_a_downstream_that_fails_to_open_closes_the_anchornet_already_open():
    opened, closed = [], []

    class Fake:
        def __init__(self, role: Role) -> None:
            if role is Role.DOWNSTREAM:
                raise BackendError("the downstream's model is corrupt")
            opened.append(role)

        def close(self) -> None:
            closed.append("anchornet")

    with pytest.raises(BackendError, match="corrupt"):
        open_both(Fake)
    assert opened == [Role.ANCHORNET] and closed == ["anchornet"]
