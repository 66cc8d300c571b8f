"""A bundle like the default one (attention pooling, EfficientNet-Lite0 with its own 127/128 normalization), end to end
against the PyTorch reference on real photos: the att_* outputs, Prediction.attention, and each model's
normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchor_edge import Pipeline
from anchor_edge.method.preprocess import resize_and_crop
from export.models.downstream import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_downstream,
)
from tests import reference


@pytest.fixture(scope="module")
def attention_bundle(small_models, tmp_path_factory):
    from export.bundle.build import export_bundle

    _, anchornet_ckpt, _ = small_models
    folder = tmp_path_factory.mktemp("lite0")
    torch.manual_seed(3)
    lite0 = load_downstream("efficientnet_lite0", num_classes=10).module
    torch.save(lite0.state_dict(), folder / "lite0.pt")
    out = export_bundle(
        anchornet_ckpt, f"efficientnet_lite0:{folder / 'lite0.pt'}", folder / "bundle", pooling="attention"
    )
    return out, lite0.eval()


def test_the_bundle_records_attention_pooling_and_two_normalizations(attention_bundle):
    path, _ = attention_bundle
    with Pipeline.from_bundle(path, backend="onnxruntime", threads=1) as pipe:
        bundle = pipe.bundle
    assert bundle.anchornet.pooling == "attention"
    assert [b.attention_output for b in bundle.branches] == ["att_63", "att_95", "att_111"]
    assert (bundle.anchornet.mean, bundle.anchornet.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (bundle.downstream.mean, bundle.downstream.std) == (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)


def test_attention_maps_probabilities_and_patches_match_pytorch(attention_bundle, small_models, photos):
    path, lite0 = attention_bundle
    anchornet = small_models[0].anchornet
    anchornet.pooling = "attention"
    try:
        with Pipeline.from_bundle(path, backend="onnxruntime", threads=1) as pipe:
            predictions = pipe.predict_batch([image for _, image in photos[:5]])
        for (name, image), got in zip(photos[:5], predictions):
            crop, _ = resize_and_crop(image)
            with torch.no_grad():
                outputs = anchornet(reference._normalized(crop, (IMAGENET_MEAN, IMAGENET_STD))[None])
            probs, attention = outputs[0][0].numpy(), [m[0, 0].numpy() for m in outputs[4:]]
            np.testing.assert_allclose(got.branch_probs, probs, atol=1e-4, err_msg=name)
            assert got.attention is not None and len(got.attention) == 3
            for got_map, expected in zip(got.attention, attention):
                assert got_map.shape == expected.shape and got_map.sum() == pytest.approx(1.0, abs=1e-4)
                np.testing.assert_allclose(got_map, expected, atol=1e-5, err_msg=name)
            # the patches go through Lite0 normalized its own way, (pixel - 127) / 128
            patch_probs = reference.classify_patches(
                lite0, crop, got.boxes.tolist(), (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)
            )
            np.testing.assert_allclose(got.patch_probs, patch_probs, atol=1e-4, err_msg=name)
            wrong = reference.classify_patches(lite0, crop, got.boxes.tolist(), (IMAGENET_MEAN, IMAGENET_STD))
            assert np.abs(wrong - patch_probs).max() > 1e-3, (
                "ImageNet statistics would give the same: the test proves nothing"
            )
    finally:
        anchornet.pooling = "gap"
