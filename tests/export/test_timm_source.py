"""`timm:NAME[:CKPT]` downstream networks: built without downloads, fed as timm's own config says, verified in ONNX.

The reference normalisation here is written out by hand from timm's
published configs (test_resnet: mean = std = 0.5; test_efficientnet:
ImageNet's 0.485 ... / 0.229 ...), on the 0-1 scale timm works in, so a
wrong scale or a silently assumed ImageNet normalisation fails the tests.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import pytest
import torch

from anchor_edge.errors import InputError
from anchor_edge.method.preprocess import normalize
from export.bundle.downstream_file import write_downstream
from export.graph.verify import photo_crops
from export.models.downstream import load_downstream

timm = pytest.importorskip("timm")

SIZES = (63, 95, 111, 224)
# timm's pretrained_cfg values, on its 0-1 scale (timm/models/resnet.py, efficientnet.py: test_* entries).
TIMM_NORMALISATION = {
    "test_resnet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "test_efficientnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_url", refuse, raising=False)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_hf", refuse, raising=False)


def _timm_logits(model: torch.nn.Module, crops: np.ndarray, mean, std) -> np.ndarray:
    """timm's own preprocessing: pixels to 0-1, minus mean, over std (0-1 scale), NCHW."""
    x = torch.from_numpy(crops).float().div(255).permute(0, 3, 1, 2)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_NORMALISATION))
def test_timm_model_exports_and_matches_timm_fed_its_own_normalisation(name, tmp_path):
    torch.manual_seed(0)
    net = load_downstream(f"timm:{name}", num_classes=10)
    mean, std = TIMM_NORMALISATION[name]
    assert (net.name, net.num_classes, net.pretrained) == (f"timm:{name}", 10, "random")
    assert net.mean == pytest.approx([m * 255 for m in mean]) and net.std == pytest.approx([s * 255 for s in std])
    assert {"mean", "std", "channel_order"} <= net.stated
    crops = photo_crops(224)
    written = write_downstream(net, tmp_path / "d.onnx", crops, sizes=SIZES, tolerance=1e-3)
    assert written.verification.sizes == SIZES and written.verification.top1_agreement == 1.0
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    for size in SIZES:
        start = (224 - size) // 2
        patch = crops[:, start : start + size, start : start + size]
        (got,) = session.run(["logits"], {"image": normalize(patch, written.mean, written.std)})
        np.testing.assert_allclose(got, _timm_logits(net.module, patch, mean, std), atol=1e-4)


def test_timm_checkpoint_gives_weights_class_count_and_class_names(tmp_path):
    torch.manual_seed(1)
    trained = timm.create_model("test_resnet", pretrained=False, num_classes=4).eval()
    names = ["cat", "dog", "fox", "owl"]
    torch.save({"state_dict": trained.state_dict(), "class_names": names}, tmp_path / "ft.pth")
    net = load_downstream(f"timm:test_resnet:{tmp_path / 'ft.pth'}")
    assert (net.num_classes, net.class_names, net.pretrained) == (4, names, f"checkpoint:{tmp_path / 'ft.pth'}")
    x = torch.randn(2, 3, 95, 95)
    with torch.no_grad():
        assert torch.equal(net.module(x), trained(x))


def test_timm_training_checkpoint_mean_and_std_win_over_the_config(tmp_path):
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    args = argparse.Namespace(model="test_resnet", mean=(0.2, 0.3, 0.4), std=(0.1, 0.1, 0.2), interpolation="")
    torch.save({"state_dict": model.state_dict(), "arch": "test_resnet", "args": args, "epoch": 3}, tmp_path / "t.pth")
    net = load_downstream(f"timm:test_resnet:{tmp_path / 't.pth'}")
    assert net.mean == pytest.approx((51.0, 76.5, 102.0)) and net.std == pytest.approx((25.5, 25.5, 51.0))
    with pytest.raises(InputError, match=r"holds timm model 'test_resnet', not 'test_efficientnet'"):
        load_downstream(f"timm:test_efficientnet:{tmp_path / 't.pth'}")


def test_an_in_memory_timm_model_brings_its_config():
    from export.models.downstream import downstream_from_module

    net = downstream_from_module(timm.create_model("test_resnet", num_classes=5), name="m", pretrained="in-memory")
    assert net.num_classes == 5 and net.mean == pytest.approx((127.5,) * 3) and net.interpolation == "bilinear"


def test_a_timm_model_with_a_fixed_input_size_is_refused():
    with pytest.raises(InputError, match="fixed input size.*cannot classify 63, 95 and 111 px patches"):
        load_downstream("timm:test_vit")


def test_an_unknown_timm_name_suggests_close_ones():
    with pytest.raises(InputError, match="timm has no model 'resnet_18'.*resnet18"):
        load_downstream("timm:resnet_18")
