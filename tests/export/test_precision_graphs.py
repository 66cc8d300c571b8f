"""The ONNX-level precision transforms on small hand-built graphs: which layers INT8 keeps float, 7-bit weights,
FP16 outputs."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.precision.calibration import BatchReader  # noqa: E402
from export.precision.fp16 import dedicate_output_identities  # noqa: E402
from export.precision.int8 import float_ends, quantize_to_int8  # noqa: E402


def _initializers(model):
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_float_ends_are_the_first_layers_and_those_writing_outputs():
    """x -> p1 -> p2 -> c1 -> Relu -> c2 -> (map output; GAP -> Flatten -> fc -> Softmax -> probs),
    c0 beside c1 added in."""
    helper, TensorProto = onnx.helper, onnx.TensorProto

    def conv(name, inputs, output):
        return helper.make_node("Conv", inputs, [output], name=name)

    nodes = [
        conv("p1", ["x", "w"], "p1_out"),
        conv("p2", ["p1_out", "w"], "p"),
        conv("c1", ["p", "w1"], "a"),
        conv("c0", ["p", "w0"], "b"),
        helper.make_node("Add", ["a", "b"], ["ab"], name="add"),
        helper.make_node("Relu", ["ab"], ["r"], name="relu"),
        conv("c2", ["r", "w2"], "map"),
        helper.make_node("GlobalAveragePool", ["map"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax"),
    ]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("probs", "map")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], outputs)
    # p1, p2, c1 are the first three; fc writes probs through Softmax; c2 writes map itself; c0 is fourth and feeds c2.
    assert float_ends(graph) == (["p1", "p2", "c1", "c2", "fc"], ["softmax"])
    graph.output.pop()  # without the map output, c2 feeds probs only through fc: it is quantized
    assert float_ends(graph) == (["p1", "p2", "c1", "fc"], ["softmax"])


def _attention_pooling_model(rng):
    """AnchorNet's pooling in small: probs = softmax(sum over 21 x 21 of F * S), S a spatial softmax.

    image -> c0 -> Relu -> c1 -> c2 -> c3 -> Relu, then F = cls(.) (3 classes) and S = softmax over space of score(.);
    c3 is the one layer INT8 quantizes.
    """
    helper, TensorProto, numpy_helper = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    weights = {
        "w0": rng.normal(0, 0.5, (8, 4, 1, 1)),
        "w1": rng.normal(0, 0.5, (8, 8, 1, 1)),
        "eye": np.eye(8).reshape(8, 8, 1, 1),
        "wc": rng.normal(0, 1.0, (3, 8, 1, 1)),
        "ws": rng.normal(0, 2.0, (1, 8, 1, 1)),
        "flat": np.array([0, -1]),
        "grid": np.array([-1, 1, 21, 21]),
        "axes": np.array([2, 3]),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w0"], ["a0"], name="c0"),
        helper.make_node("Relu", ["a0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "eye"], ["i1"], name="c1"),
        helper.make_node("Conv", ["i1", "eye"], ["i2"], name="c2"),
        helper.make_node("Conv", ["i2", "w1"], ["a1"], name="c3"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wc"], ["F"], name="cls"),
        helper.make_node("Conv", ["r1", "ws"], ["L"], name="score"),
        helper.make_node("Reshape", ["L", "flat"], ["Lf"], name="flatten"),
        helper.make_node("Softmax", ["Lf"], ["Sf"], name="spatial_softmax", axis=1),
        helper.make_node("Reshape", ["Sf", "grid"], ["S"], name="unflatten"),
        helper.make_node("Mul", ["F", "S"], ["FS"], name="weigh"),
        helper.make_node("ReduceSum", ["FS", "axes"], ["logits"], name="pool", keepdims=0),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "attention_pooling",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, 21, 21])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(v.astype(np.int64 if v.dtype.kind == "i" else np.float32), k)
            for k, v in weights.items()
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_keeps_attention_pooling_float_so_diffuse_maps_survive(tmp_path):
    """A spatial softmax over 441 places is near 1/441 when diffuse: 8-bit steps sized by peaked maps erase it.

    Calibrated on peaked and diffuse inputs, the INT8 model must still answer like FP32 on diffuse ones
    (with the pooling's Mul quantized, S rounded to zeros and the probabilities came out uniform).
    """
    rng = np.random.default_rng(0)
    source, target = tmp_path / "pooling.onnx", tmp_path / "pooling.int8.onnx"
    onnx.save(_attention_pooling_model(rng), str(source))
    diffuse = rng.normal(1.0, 0.05, (8, 4, 21, 21)).astype(np.float32)
    peaked = diffuse.copy()
    peaked[:, :, 10, 10] += 20.0
    record = quantize_to_int8(source, target, BatchReader([peaked, diffuse, peaked, diffuse]), int8_target="cpu")
    assert list(record.float_layers) == ["c0", "c1", "c2", "cls", "score"]
    assert list(record.float_output_ops) == ["flatten", "spatial_softmax", "unflatten", "weigh", "pool", "softmax"]
    nodes = onnx.load(str(target)).graph.node
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    assert {n.name for n in nodes if n.op_type == "Conv" and n.input[1] in dequantized} == {"c3"}

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": diffuse})[0]

    expected, got = run(source), run(target)
    assert expected.max() > 0.5, "FP32 is far from uniform here"
    np.testing.assert_allclose(got, expected, atol=0.05)


def _pointwise_then_depthwise_model():
    """image (8 channels) -> c0, c1, c2 (identity 1x1, float: the first three) -> sum (1x1, all ones)
    -> dw (3x3 depthwise,
    group 8) -> out (identity 1x1, writes the output: float). sum and dw are the two layers INT8 quantizes."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    eye = np.eye(8, dtype=np.float32).reshape(8, 8, 1, 1)
    weights = {
        "eye": eye,
        "ones": np.ones((8, 8, 1, 1), np.float32),
        "box": np.random.default_rng(0).uniform(0.5, 1.0, (8, 1, 3, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "eye"], ["a"], name="c0"),
        helper.make_node("Conv", ["a", "eye"], ["b"], name="c1"),
        helper.make_node("Conv", ["b", "eye"], ["c"], name="c2"),
        helper.make_node("Conv", ["c", "ones"], ["s"], name="sum"),
        helper.make_node("Conv", ["s", "box"], ["d"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "eye"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "pointwise_then_depthwise",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 8, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 8, 6, 6])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _signed_calibration(rng):
    """4 batches of 8 images, each all positive or all negative (|x| in 0.5..1), alternating: x spans about -1..1
    (uint8 zero point near 128) and `sum` about -8..8."""
    signs = np.where(np.arange(8) % 2 == 0, 1.0, -1.0).reshape(1, 8, 1, 1, 1)
    return list((rng.uniform(0.5, 1.0, (4, 8, 8, 6, 6)) * signs).astype(np.float32))


def _integer_weights(path):
    """{layer: its weights as stored integers}, for the layers whose weights a DequantizeLinear feeds."""
    model = onnx.load(str(path))
    initializers, producers = _initializers(model), {o: n for n in model.graph.node for o in n.output}
    return {
        n.name: initializers[producers[n.input[1]].input[0]]
        for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in producers and producers[n.input[1]].op_type == "DequantizeLinear"
    }


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_seven_bit_weights_only_where_the_cpu_kernels_could_saturate(tmp_path, target):
    """Without VNNI, ONNX Runtime's U8S8 GEMM sums pairs of uint8 x int8 products in 16 bits: 255 x 127 x 2 overflows
    32767, 255 x 64 x 2 does not. So for the cpu target every quantized convolution but the depthwise ones stores its
    weights in -64..64; depthwise convolutions (a kernel of their own) and every TensorRT weight keep -127..127."""
    source, target_path = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    onnx.save(_pointwise_then_depthwise_model(), str(source))
    calibration = _signed_calibration(np.random.default_rng(1))
    record = quantize_to_int8(source, target_path, BatchReader(calibration), int8_target=target)
    weights = _integer_weights(target_path)
    assert sorted(weights) == ["dw", "sum"]
    assert list(record.seven_bit_layers) == (["sum"] if target == "cpu" else [])
    # Symmetric per-channel weights: each channel's largest weight takes the top level.
    assert np.abs(weights["sum"].astype(int)).max(axis=(1, 2, 3)).tolist() == [64 if target == "cpu" else 127] * 8
    assert np.abs(weights["dw"].astype(int)).max(axis=(1, 2, 3)).tolist() == [127] * 8


def test_cpu_int8_answers_like_float_where_8_bit_weights_would_saturate(tmp_path):
    """Inputs at 0.6..0.8 of a signed range -1..1 are uint8 values of about 205..230, and `sum` adds 8 channels with
    weights all at the top level: with 8-bit weights, a CPU without VNNI clips each pair of products (about 55000) at
    32767, and the zero-point correction then takes nearly everything away (the outputs came out 0.35 for 27).
    With ONNX Runtime's fused kernels the INT8 model must answer like FP32. (With VNNI, 8-bit weights pass too.)"""
    source, target = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    onnx.save(_pointwise_then_depthwise_model(), str(source))
    rng = np.random.default_rng(2)
    quantize_to_int8(source, target, BatchReader(_signed_calibration(rng)), int8_target="cpu")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "as_run.onnx")
    fused = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
    x = rng.uniform(0.6, 0.8, (2, 8, 6, 6)).astype(np.float32)  # within the calibrated ranges
    expected = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    got = fused.run(None, {"image": x})[0]
    assert expected.min() > 10, "every output sums 8 channels of 0.6..0.8 over a 3x3 window"
    np.testing.assert_allclose(got, expected, rtol=0.03)


def test_output_used_inside_the_graph_gets_its_own_identity():
    # y = relu(x) is an output and also feeds z = y + y: the case of AnchorNet's logit maps.
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Add", ["y", "y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2]) for n in ("y", "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert dedicate_output_identities(model) == ["y"]
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    assert producers["y"] == "Identity"
    assert all("y" not in node.input for node in model.graph.node)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, z = session.run(["y", "z"], {"x": np.array([-1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(y, [0.0, 2.0])
    np.testing.assert_array_equal(z, [0.0, 4.0])
