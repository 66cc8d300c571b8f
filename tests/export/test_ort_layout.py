"""The layout rewrites: exactly the values they replace, only where they apply, and fewer layout conversions."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from export.graph.onnx_export import _export, export_anchornet
from export.graph.ort_layout import rewrite_center_crops, rewrite_se_gates
from export.models.anchornet import OUTPUT_NAMES_GAP, AnchorNet


def _crop_graph(starts: int, ends: int) -> onnx.ModelProto:
    """x -> Slice(H, starts:ends) -> Slice(W, starts:ends) on a (1, 2, 6, 7) input."""
    ints = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [1], [v])  # noqa: E731
    inits = [ints("s", starts), ints("e", ends), ints("h", 2), ints("w", 3), ints("one", 1)]
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "h", "one"], ["rows"]),
        helper.make_node("Slice", ["rows", "s", "e", "w", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "crop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_one_hot_conv_reproduces_the_crop_bit_for_bit():
    model = _crop_graph(1, -1)
    assert rewrite_center_crops(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    x = np.random.default_rng(0).normal(0, 1e3, (1, 2, 6, 7)).astype(np.float32)
    x[0, 0, 2, 3] = -0.0
    np.testing.assert_array_equal(_run(model, x), x[:, :, 1:-1, 1:-1])


def test_asymmetric_slices_are_left_alone():
    model = _crop_graph(1, -2)
    assert rewrite_center_crops(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Slice", "Slice"]


def test_repeated_gate_multiplies_exactly_like_the_broadcast():
    shape = ["batch", 3, 4, 5]
    nodes = [helper.make_node("HardSigmoid", ["logit"], ["gate"]), helper.make_node("Mul", ["x", "gate"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "se",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 3, 1, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    broadcast = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    repeated = onnx.ModelProto.FromString(broadcast.SerializeToString())
    assert rewrite_se_gates(repeated) == 1
    assert [n.op_type for n in repeated.graph.node] == ["HardSigmoid", "Resize", "Mul"]
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.normal(0, 10, (2, 3, 4, 5)).astype(np.float32),
        "logit": rng.normal(0, 3, (2, 3, 1, 1)).astype(np.float32),
    }
    outputs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for m in (broadcast, repeated)
    ]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    gate = np.clip(0.2 * feeds["logit"] + 0.5, 0, 1)  # ONNX HardSigmoid defaults: alpha 0.2, beta 0.5
    np.testing.assert_allclose(outputs[1], feeds["x"] * gate, rtol=1e-6)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    torch.manual_seed(3)
    net = AnchorNet(num_classes=10).eval()
    folder = tmp_path_factory.mktemp("layout")
    _export(net, torch.zeros(1, 3, 224, 224), folder / "plain.onnx", list(OUTPUT_NAMES_GAP), {"image": {0: "batch"}})
    export_anchornet(net, folder / "rewritten.onnx", OUTPUT_NAMES_GAP)
    return onnx.load(str(folder / "plain.onnx")), onnx.load(str(folder / "rewritten.onnx"))


def test_anchornet_export_has_no_crops_left_and_the_same_outputs(exports, photos):
    plain, rewritten = exports
    slices = sum(n.op_type == "Slice" for n in plain.graph.node)
    crops = [n for n in rewritten.graph.node if n.name.endswith("/center_crop")]
    assert slices > 0 and len(crops) == slices // 2  # each crop was a Slice over H and one over W
    assert not any(n.op_type == "Slice" for n in rewritten.graph.node)
    gates = [n for n in plain.graph.node if n.op_type == "HardSigmoid"]
    assert len(gates) == 12  # one SE block per bneck row with SE: Table 1's six, two per branch in Table 2
    assert sum(n.name.endswith("/gate_full") for n in rewritten.graph.node) == len(gates)
    from anchor_edge.method.preprocess import normalize, resize_and_crop
    from export.models.downstream import IMAGENET_MEAN, IMAGENET_STD

    x = normalize(np.stack([resize_and_crop(image)[0] for _, image in photos[:3]]), IMAGENET_MEAN, IMAGENET_STD)
    for name, want, got in zip(OUTPUT_NAMES_GAP, _all(plain, x), _all(rewritten, x)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=name)


def test_onnx_runtime_needs_fewer_layout_conversions(exports, tmp_path):
    counts = []
    for index, model in enumerate(exports):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"optimized_{index}.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath).graph.node
        counts.append(sum(n.op_type in ("ReorderInput", "ReorderOutput") for n in nodes))
    if counts[0] == 0:
        pytest.skip("ONNX Runtime uses no blocked (NCHWc) layout on this CPU")
    assert counts[1] < counts[0]


def _all(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})
