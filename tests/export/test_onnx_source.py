"""An already-exported ONNX file as the downstream: made dynamic, run at every patch size, or refused by node.

The reference is the PyTorch network each file was exported from: the
edited graph must give its logits at 63, 95, 111 and 224 px, sizes the
fixed-size file itself could never be run at.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision

from anchor_edge.errors import InputError
from export.bundle.downstream_file import write_downstream
from export.graph.onnx_flops import count_onnx_multiply_adds
from export.graph.verify import photo_crops
from export.models.downstream import load_downstream
from export.models.flops import count_multiply_adds

SIZES = (63, 95, 111, 224)


def _export(model: torch.nn.Module, path: Path, *, dynamic: bool) -> Path:
    axes = {"input.1": {0: "n", 2: "h", 3: "w"}, "prob": {0: "n"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            dynamo=False,
            opset_version=13,
            input_names=["input.1"],
            output_names=["prob"],
            dynamic_axes=axes,
        )
    return path


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed-224", "dynamic-axes"])
def test_an_onnx_file_runs_at_every_patch_size_like_its_source(resnet18, tmp_path, dynamic):
    net = load_downstream(str(_export(resnet18, tmp_path / "r18.onnx", dynamic=dynamic)))
    assert (net.module, net.num_classes, net.name, net.pretrained) == (
        None,
        10,
        "r18.onnx",
        f"onnx:{tmp_path / 'r18.onnx'}",
    )
    session = ort.InferenceSession(net.onnx_source.model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("image", ["batch", 3, "height", "width"])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 10])]
    for size in SIZES:
        x = torch.randn(3, 3, size, size)
        with torch.no_grad():
            expected = resnet18(x).numpy()
        np.testing.assert_allclose(session.run(["logits"], {"image": x.numpy()})[0], expected, atol=1e-4)


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed-224", "dynamic-axes"])
def test_the_written_graph_is_verified_against_the_original_file(resnet18, tmp_path, dynamic):
    net = load_downstream(str(_export(resnet18, tmp_path / "r18.onnx", dynamic=dynamic)))
    written = write_downstream(net, tmp_path / "downstream.onnx", photo_crops(224), sizes=SIZES, tolerance=1e-3)
    assert written.verification.sizes == (SIZES if dynamic else (224,))
    assert written.verification.top1_agreement == 1.0 and written.verification.max_abs_diff["logits"] < 1e-4
    # The exporter folds each BatchNorm into its convolution, so the graph holds slightly fewer numbers.
    assert written.parameters == pytest.approx(sum(p.numel() for p in resnet18.parameters()), rel=1e-3)
    assert written.multiply_adds == {size: count_multiply_adds(resnet18, size) for size in SIZES}


def test_a_bgr_onnx_file_takes_rgb_in_the_bundle(resnet18, tmp_path):
    from export.models.preprocessing import PreprocessingFlags, apply_preprocessing

    net = load_downstream(str(_export(resnet18, tmp_path / "bgr.onnx", dynamic=False)))
    net = apply_preprocessing(
        net, PreprocessingFlags(mean=(104.0, 117.0, 123.0), std=(1, 2, 3), pixel_range="0-255", channel_order="bgr")
    )
    written = write_downstream(net, tmp_path / "downstream.onnx", photo_crops(224), sizes=SIZES, tolerance=1e-3)
    assert written.mean == (123.0, 117.0, 104.0) and written.std == (3.0, 2.0, 1.0)
    rgb = torch.randn(2, 3, 95, 95)
    session = ort.InferenceSession(str(tmp_path / "downstream.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = resnet18(rgb.flip(1)).numpy()
    np.testing.assert_allclose(session.run(["logits"], {"image": rgb.numpy()})[0], expected, atol=1e-4)


class _FlattenIntoLinear(torch.nn.Module):
    """A classifier that only works at 224 px: its Linear takes a flattened 56x56 map."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.fc = torch.nn.Linear(4 * 56 * 56, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


class _FixedAveragePool(torch.nn.Module):
    """Pools with a fixed 7x7 window instead of globally: a 63 px input leaves a 2x2 map."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=32, padding=1)
        self.pool = torch.nn.AvgPool2d(7)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


@pytest.mark.parametrize(
    "model, node", [(_FlattenIntoLinear(), "/fc/Gemm"), (_FixedAveragePool(), "/pool/AveragePool")]
)
def test_a_graph_that_cannot_take_a_patch_is_refused_naming_the_node(tmp_path, model, node):
    path = _export(model, tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(InputError, match=rf"cannot take a 63 px input: .*node name: {node}.*pool globally"):
        load_downstream(str(path))


def test_an_invalid_or_missing_onnx_file_is_an_input_error(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(InputError, match="not a valid ONNX model"):
        load_downstream(str(tmp_path / "junk.onnx"))
    with pytest.raises(InputError, match="ONNX file not found"):
        load_downstream(str(tmp_path / "nowhere.onnx"))


def test_onnx_multiply_adds_match_the_pytorch_count():
    model = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    for size in SIZES:
        assert count_onnx_multiply_adds(graph, size) == count_multiply_adds(model, size)
