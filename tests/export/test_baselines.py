"""python -m export.training.baselines on the committed weights: verified ONNX baselines that classify the digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anchor_edge.backends.ort import OrtRunner
from anchor_edge.method.preprocess import normalize, resize_and_crop
from anchor_edge.pipeline import softmax
from export.data.digits import make_sample
from export.models.downstream import EFFICIENTNET_LITE0, IMAGENET_MEAN, IMAGENET_STD, RESNET50
from export.training.baselines import main

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


#: Per architecture: the baselines its recipe trains, and its input normalization.
EXPECTED = {
    EFFICIENTNET_LITE0: ({"full", "resized"}, [127.0] * 3, [128.0] * 3),
    RESNET50: ({"full"}, list(IMAGENET_MEAN), list(IMAGENET_STD)),
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(EXPECTED))
def test_baselines_export_and_the_full_image_baseline_reads_digits(tmp_path, architecture):
    out = tmp_path / "baselines"
    assert main(["--weights", str(WEIGHTS), "--out", str(out), "--architecture", architecture]) == 0
    models = json.loads((out / "baselines.json").read_text())["models"]
    kinds, mean, std = EXPECTED[architecture]
    assert set(models) == kinds
    for entry in models.values():
        assert (
            entry["name"] == architecture
            and entry["mean"] == pytest.approx(mean)
            and entry["std"] == pytest.approx(std)
        )
        assert set(entry["multiply_adds"]) == {"63", "95", "111", "224"}
        assert (
            max(entry["verification"]["max_abs_diff"].values()) <= 1e-3
            and entry["verification"]["top1_agreement"] == 1.0
        )
    # The full-image baseline on 40 held-out digits (docs/accuracy.md has the 600-image figure).
    samples = [make_sample("test", i) for i in range(40)]
    crops = np.stack([resize_and_crop(s.image)[0] for s in samples])
    with OrtRunner(out / models["full"]["file"], threads=1) as runner:
        logits = runner.run({"image": normalize(crops, models["full"]["mean"], models["full"]["std"])})["logits"]
    accuracy = np.mean(softmax(logits).argmax(1) == [s.label for s in samples])
    assert accuracy >= 0.7, accuracy


def test_a_missing_checkpoint_is_exit_code_one(tmp_path, capsys):
    assert main(["--weights", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "downstream_full.pt is missing" in capsys.readouterr().err
