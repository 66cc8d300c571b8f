"""Shared fixtures: one small exported bundle per test session, and the real photos."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest


class SmallModels(NamedTuple):
    """The PyTorch modules inside `small_bundle`, for reference computations."""

    anchornet: object
    downstream: object


@pytest.fixture(scope="session", autouse=True)
def home_in_a_temporary_directory(tmp_path_factory):
    """HOME and the XDG cache point into the session's temporary directory, so no test writes into the user's.

    Defaults such as the training --work-dir (~/.cache/anchor-edge) and the
    TensorRT timing cache live under HOME; the subprocess tests inherit this.
    """
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("HOME", str(home))
    patch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> tuple[SmallModels, Path, Path]:
    torch = pytest.importorskip("torch")
    import torchvision

    from export.models.anchornet import AnchorNet

    torch.manual_seed(1)
    anchornet = AnchorNet(num_classes=10).eval()
    # Fresh BatchNorm statistics make the maps nearly flat; spread them like a
    # trained network's, so heatmap order is decided by the image, not by float noise.
    for norm in (m for m in anchornet.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.normal_(0.0, 0.1)
        norm.running_var.uniform_(0.05, 0.55)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.normal_(0.0, 0.2)
    downstream = torchvision.models.resnet18(num_classes=10).eval()
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.save(anchornet.state_dict(), folder / "anchornet.pt")
    torch.save(downstream.state_dict(), folder / "resnet18.pt")
    return SmallModels(anchornet, downstream), folder / "anchornet.pt", folder / "resnet18.pt"


@pytest.fixture(scope="session")
def small_bundle(small_models, tmp_path_factory) -> Path:
    """A 10-class bundle: seeded AnchorNet + resnet18, exported and verified by the export stage."""
    from export.bundle.build import export_bundle

    _, anchornet_ckpt, downstream_ckpt = small_models
    out = tmp_path_factory.mktemp("bundles") / "small"
    return export_bundle(anchornet_ckpt, f"resnet18:{downstream_ckpt}", out)


@pytest.fixture(scope="session")
def rolled_bundle(small_models, tmp_path_factory) -> Path:
    """`small_bundle` with its downstream's classifier rows rolled by one: the same AnchorNet and patches, and a
    downstream that answers class (c + 1) % 10 wherever small_bundle's answers c (softmax and its sums over patches
    follow the roll), so the two bundles disagree on every image by construction."""
    torch = pytest.importorskip("torch")
    from export.bundle.build import export_bundle

    models, anchornet_ckpt, _ = small_models
    state = {key: value.clone() for key, value in models.downstream.state_dict().items()}
    for key in ("fc.weight", "fc.bias"):
        state[key] = torch.roll(state[key], 1, dims=0)
    folder = tmp_path_factory.mktemp("rolled")
    torch.save(state, folder / "resnet18.pt")
    return export_bundle(anchornet_ckpt, f"resnet18:{folder / 'resnet18.pt'}", folder / "bundle")


@pytest.fixture(scope="session")
def photos():
    """The real photos bundled with scikit-image and scikit-learn, as (name, BGR uint8) pairs."""
    pytest.importorskip("skimage")
    from export.data.photos import real_photos

    return real_photos()
