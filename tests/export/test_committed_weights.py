"""The weights in weights/ as shipped: exported as `python export/to_trt.py` does, on a fixed slice of the
digits test split.

Loose floors under the figures docs/accuracy.md and docs/precision.md report
(measured on 600 images), so a change that breaks the shipped model, its
export or its FP16 conversion fails CI.
"""

from __future__ import annotations

import numpy as np
import pytest

from anchor_edge import Pipeline
from export.data.digits import make_sample
from export.models.downstream import DEFAULT_ARCHITECTURE

IMAGES = 60
#: Floors for these 60 images, where the shipped weights score 91.7 % (decided class) and 86.7 % (the
#: ResNet-50 pipeline, the bundle's `fast`); docs/accuracy.md has the 600-image figures.
ANCHORNET_FLOOR = 0.85
PIPELINE_FLOOR = 0.83
FP16_AGREEMENT_FLOOR = 0.95


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory):
    from export.bundle.build import export_bundle
    from export.bundle.defaults import resolve_default_weights

    models = resolve_default_weights(None, None)
    assert models.anchornet is not None and models.downstream.startswith(f"{DEFAULT_ARCHITECTURE}:"), (
        "weights/ must hold the default models"
    )
    return export_bundle(
        models.anchornet, models.downstream, tmp_path_factory.mktemp("default") / "bundle", preset=models.preset
    )


@pytest.fixture(scope="module")
def samples():
    return [make_sample("test", i) for i in range(IMAGES)]


@pytest.mark.slow
def test_the_shipped_models_decide_and_classify_held_out_digits(default_bundle, samples):
    with Pipeline.from_bundle(default_bundle, backend="onnxruntime") as pipe:
        bundle = pipe.bundle
        assert bundle.trained and bundle.anchornet.pooling == "attention" and bundle.preset == "fast"
        # The architecture the weights are for is recorded, and it is heavy enough for the patches to pay.
        assert bundle.downstream.name == DEFAULT_ARCHITECTURE
        assert bundle.downstream.multiply_adds[bundle.crop] >= 4 * bundle.anchornet.multiply_adds
        predictions = pipe.predict_batch([s.image for s in samples])
    labels = np.array([s.label for s in samples])
    decided = np.mean([p.anchor_class for p in predictions] == labels)
    classified = np.mean([p.class_id for p in predictions] == labels)
    assert all(len(p.boxes) == 1 for p in predictions)  # `fast`: the hottest patch alone
    assert decided >= ANCHORNET_FLOOR and classified >= PIPELINE_FLOOR, (decided, classified)


@pytest.mark.slow
def test_fp16_conversion_of_the_shipped_bundle_agrees_with_fp32(default_bundle, samples, tmp_path):
    import shutil

    from export.precision.calibration import ImageSet
    from export.precision.convert import PrecisionOptions, convert_bundle
    from export.precision.flag import parse_precision

    copy = tmp_path / "fp16"
    shutil.copytree(default_bundle, copy)
    held_out = ImageSet(
        [(str(i), s.image) for i, s in enumerate(samples)], "digits test 0-59", [s.label for s in samples]
    )
    report = convert_bundle(
        copy, PrecisionOptions(models=parse_precision("fp16"), min_agreement=FP16_AGREEMENT_FLOOR), held_out=held_out
    )
    assert report.pipeline_top1_agreement >= FP16_AGREEMENT_FLOOR
    assert report.top1_accuracy.reference >= PIPELINE_FLOOR - 0.05
    assert abs(report.top1_accuracy.candidate - report.top1_accuracy.reference) <= 0.05
