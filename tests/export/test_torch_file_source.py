"""A file holding a whole network: TorchScript loads as given; a pickled module only with allow_pickle."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision

from anchor_edge.errors import InputError
from export.bundle.downstream_file import write_downstream
from export.graph.verify import photo_crops
from export.models.downstream import load_downstream
from export.models.flops import count_multiply_adds

SIZES = (63, 95, 111, 224)


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=6).eval()


def test_a_torchscript_file_exports_and_matches_its_source_at_every_size(mobilenet, tmp_path):
    torch.jit.script(mobilenet).save(str(tmp_path / "net.ts"))
    net = load_downstream(str(tmp_path / "net.ts"))
    assert (net.num_classes, net.name, net.pretrained) == (6, "net.ts", f"torchscript:{tmp_path / 'net.ts'}")
    written = write_downstream(net, tmp_path / "downstream.onnx", photo_crops(224), sizes=SIZES, tolerance=1e-3)
    assert written.verification.sizes == SIZES and written.verification.top1_agreement == 1.0
    assert written.multiply_adds == {size: count_multiply_adds(mobilenet, size) for size in SIZES}
    session = ort.InferenceSession(str(tmp_path / "downstream.onnx"), providers=["CPUExecutionProvider"])
    for size in SIZES:
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            np.testing.assert_allclose(
                session.run(["logits"], {"image": x.numpy()})[0], mobilenet(x).numpy(), atol=1e-4
            )


def test_a_pickled_module_needs_allow_pickle(mobilenet, tmp_path):
    torch.save(mobilenet, tmp_path / "whole.pt")
    with pytest.raises(InputError, match=r"whole pickled model; loading it runs code.*--allow-pickle"):
        load_downstream(str(tmp_path / "whole.pt"))
    net = load_downstream(str(tmp_path / "whole.pt"), allow_pickle=True)
    x = torch.randn(1, 3, 111, 111)
    with torch.no_grad():
        assert torch.equal(net.module(x), mobilenet(x))
    assert net.pretrained == f"pickled:{tmp_path / 'whole.pt'}"


def test_allow_pickle_is_an_error_where_it_does_not_apply(mobilenet, tmp_path):
    torch.jit.script(mobilenet).save(str(tmp_path / "net.pt"))
    with pytest.raises(InputError, match="allow_pickle .* applies only to a pickled module file"):
        load_downstream(str(tmp_path / "net.pt"), allow_pickle=True)
    with pytest.raises(InputError, match="allow_pickle"):
        load_downstream("resnet18", allow_pickle=True)


def test_a_state_dict_file_alone_asks_for_its_architecture(mobilenet, tmp_path):
    torch.save(mobilenet.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(InputError, match=r"weights only \(a state_dict\).*NAME:.*weights\.pth"):
        load_downstream(str(tmp_path / "weights.pth"))
    with pytest.raises(InputError, match="model file not found"):
        load_downstream(str(tmp_path / "none.pt"))
