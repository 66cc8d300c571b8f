"""Typed backend options: an option reaches only a backend that takes it; anything else is an InputError."""

from __future__ import annotations

import argparse

import pytest

from anchor_edge import InputError, OnnxRuntimeOptions, OpenVinoOptions, Pipeline, TensorRtOptions
from anchor_edge.backends.options import backend_options, takes
from anchor_edge.cli import build_parser, main
from anchor_edge.cli.options import backend_keywords

BUNDLE_COMMANDS = ("predict", "verify", "batch", "serve")


def test_keywords_become_the_chosen_backends_value():
    assert backend_options("onnxruntime", threads=2, providers=["cpu"], device=None) == OnnxRuntimeOptions(
        providers=("cpu",), threads=2
    )
    assert backend_options("openvino", device="GPU", inference_precision="bf16") == OpenVinoOptions("GPU", "bf16")
    assert backend_options("tensorrt") == TensorRtOptions()


@pytest.mark.parametrize(
    "backend, keywords, refused",
    [
        ("onnxruntime", {"device": "GPU"}, "device does not apply to onnxruntime"),
        ("onnxruntime", {"inference_precision": "bf16"}, "precision does not apply to onnxruntime"),
        ("openvino", {"providers": "cuda"}, "providers does not apply to openvino"),
        ("openvino", {"provider_options": object()}, "provider_options does not apply to openvino"),
        ("tensorrt", {"threads": 2, "device": "GPU"}, "threads, device do not apply to tensorrt"),
        ("onnxruntime", {"no_such_option": 1}, "no_such_option does not apply to onnxruntime"),
    ],
)
def test_an_option_the_backend_does_not_take_is_an_input_error(backend, keywords, refused):
    with pytest.raises(InputError, match=refused) as caught:
        backend_options(backend, **keywords)
    assert "onnxruntime takes providers, threads, provider_options" in str(caught.value)
    assert "tensorrt takes none" in str(caught.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OnnxRuntimeOptions(threads=0), "threads must be an integer >= 1, got 0"),
        (lambda: OpenVinoOptions(threads=True), "threads must be an integer >= 1, got True"),
        (lambda: OpenVinoOptions(precision="int4"), "precision must be one of"),
    ],
)
def test_values_check_their_fields(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_from_bundle_refuses_device_on_onnx_runtime(small_bundle):
    with pytest.raises(InputError, match="device does not apply to onnxruntime"):
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", device="GPU")


def test_auto_checks_the_options_against_the_backend_it_chose(small_bundle):
    # small_bundle has no engines, so auto runs ONNX Runtime, which takes no OpenVINO device.
    with pytest.raises(InputError, match="device does not apply to onnxruntime"):
        Pipeline.from_bundle(small_bundle, device="GPU")


def test_an_options_value_runs_its_backend(small_bundle, photos):
    with (
        Pipeline.from_bundle(small_bundle, backend=OnnxRuntimeOptions(threads=1)) as typed,
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as keywords,
    ):
        assert typed.anchornet.describe() == "onnxruntime:cpu"
        image = photos[0][1]
        assert typed(image).class_id == keywords(image).class_id


def test_keywords_next_to_an_options_value_are_refused(small_bundle):
    with pytest.raises(InputError, match="threads given next to OnnxRuntimeOptions; put them inside it"):
        Pipeline.from_bundle(small_bundle, backend=OnnxRuntimeOptions(), threads=2)
    with pytest.raises(InputError, match="backend must be one of"):
        Pipeline.from_bundle(small_bundle, backend={"backend": "onnxruntime"})


def test_pool_threads_go_only_where_taken():
    assert takes("onnxruntime", "threads") and takes("openvino", "threads") and not takes("tensorrt", "threads")


def _backend_flags(command: str) -> set[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    group = next(g for g in subparsers.choices[command]._action_groups if g.title.startswith("backend"))
    return {flag for action in group._group_actions for flag in action.option_strings}


def test_every_subcommand_that_opens_a_bundle_takes_the_same_backend_options():
    flags = {command: _backend_flags(command) for command in BUNDLE_COMMANDS}
    shared = {"--backend", "--providers", "--device", "--inference-precision"}
    assert all(shared <= command_flags for command_flags in flags.values())
    assert "--threads" in flags["predict"] and "--threads" in flags["verify"]
    parsed = build_parser().parse_args(["serve", "--device", "GPU", "--threads-per-replica", "2"])
    assert backend_keywords(parsed) == {"backend": "auto", "device": "GPU"} and parsed.threads_per_replica == 2


def test_the_benchmark_takes_them_too():
    latency = pytest.importorskip("benchmarks.latency")
    args = latency.build_parser().parse_args(["--backend", "openvino", "--device", "CPU", "--threads", "2"])
    assert backend_keywords(args) == {"backend": "openvino", "device": "CPU", "threads": 2}


def test_the_command_line_fails_on_an_option_that_does_not_apply(small_bundle, capsys, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    code = main(["predict", str(image), "--bundle", str(small_bundle), "--backend", "onnxruntime", "--device", "GPU"])
    assert code == 1
    assert "device does not apply to onnxruntime" in capsys.readouterr().err
