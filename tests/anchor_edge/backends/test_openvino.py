"""The OpenVINO backend runs the Pipeline like ONNX Runtime FP32: same classes, branches and boxes on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from anchor_edge import BackendError, InputError, Pipeline

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")


@pytest.fixture(scope="module")
def pipelines(small_bundle):
    with (
        Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as reference,
        Pipeline.from_bundle(small_bundle, backend="openvino", threads=1) as openvino,
    ):
        yield reference, openvino


def test_openvino_f32_matches_onnxruntime_on_real_photos(pipelines, photos):
    reference, openvino = pipelines
    assert openvino.backend == "openvino" and openvino.anchornet.inference_precision == "f32"
    images = [image for _, image in photos]
    for (name, _), got, expected in zip(photos, openvino.predict_batch(images), reference.predict_batch(images)):
        assert (got.class_id, got.branch, got.anchor_class) == (
            expected.class_id,
            expected.branch,
            expected.anchor_class,
        ), name
        assert got.boxes.tolist() == expected.boxes.tolist(), name
        np.testing.assert_allclose(got.branch_probs, expected.branch_probs, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(got.patch_probs, expected.patch_probs, atol=1e-4, err_msg=name)


def test_openvino_names_a_device_it_does_not_have(small_bundle):
    with pytest.raises(BackendError, match="no device 'NPU9'"):
        Pipeline.from_bundle(small_bundle, backend="openvino", device="NPU9")
    with pytest.raises(InputError, match=r"precision must be one of \('f32', 'bf16', 'f16'\), got 'int4'"):
        Pipeline.from_bundle(small_bundle, backend="openvino", inference_precision="int4")
