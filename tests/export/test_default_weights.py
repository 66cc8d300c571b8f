"""`python export/to_trt.py` exports the committed trained weights only when asked for nothing else."""
from pathlib import Path

import pytest

from export.bundle import defaults as default_weights
from export.bundle.defaults import resolve_default_weights


@pytest.fixture
def weights(tmp_path, monkeypatch):
    anchornet, downstream = tmp_path / "anchornet.pt", tmp_path / "downstream_patches.pt"
    monkeypatch.setattr(default_weights, "ANCHORNET_WEIGHTS", anchornet)
    monkeypatch.setattr(default_weights, "DOWNSTREAM_WEIGHTS", downstream)
    return anchornet, downstream


def test_no_flags_and_trained_weights_give_the_trained_pair(weights):
    for path in weights:
        path.write_bytes(b"x")
    anchornet, downstream = resolve_default_weights(None, None)
    assert Path(anchornet).resolve() == weights[0].resolve()
    name, checkpoint = downstream.split(":", 1)
    assert name == "efficientnet_lite0" and Path(checkpoint).resolve() == weights[1].resolve()


def test_without_both_weight_files_the_default_stays_untrained(weights):
    weights[0].write_bytes(b"x")  # the downstream weights are missing
    assert resolve_default_weights(None, None) == (None, "efficientnet_lite0")


def test_any_flag_keeps_its_old_meaning(weights):
    for path in weights:
        path.write_bytes(b"x")
    assert resolve_default_weights(None, "resnet50") == (None, "resnet50")
    assert resolve_default_weights(Path("a.pt"), None) == (Path("a.pt"), "efficientnet_lite0")


def test_the_defaults_are_the_committed_weights_of_this_checkout():
    """The module's own location finds weights/ at the repository root, wherever the module sits."""
    repository = Path(__file__).resolve().parents[2]
    assert default_weights.ANCHORNET_WEIGHTS == repository / "weights" / "anchornet.pt"
    assert default_weights.ANCHORNET_WEIGHTS.is_file() and default_weights.DOWNSTREAM_WEIGHTS.is_file()
