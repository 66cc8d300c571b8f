"""`python export/to_trt.py` exports the committed trained weights only when asked for nothing else,
or `--trained ARCH`."""

from pathlib import Path

import pytest

from anchor_edge.errors import InputError
from export.bundle.defaults import PAPER_PRESET, TRAINED_PRESET, resolve_default_weights
from export.models.downstream import DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE0
from export.models.trained_weights import WEIGHTS_DIR, downstream_weights, trained_architectures


@pytest.fixture
def weights(tmp_path):
    """A weights/ folder with the trained AnchorNet and a patch-tuned downstream for the default and for Lite0."""
    (tmp_path / "anchornet.pt").write_bytes(b"x")
    for architecture in {DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE0}:
        path = downstream_weights(tmp_path, architecture, "patches")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def _split(spec: str) -> tuple[str, Path]:
    name, checkpoint = spec.split(":", 1)
    return name, Path(checkpoint).resolve()


def test_no_flags_and_trained_weights_give_the_default_architectures_trained_pair(weights):
    anchornet, downstream, preset = resolve_default_weights(None, None, weights=weights)
    assert preset == TRAINED_PRESET == "fast"
    assert Path(anchornet).resolve() == (weights / "anchornet.pt").resolve()
    assert _split(downstream) == (
        DEFAULT_ARCHITECTURE,
        (weights / DEFAULT_ARCHITECTURE / "downstream_patches.pt").resolve(),
    )


def test_trained_picks_another_architectures_pair(weights):
    anchornet, downstream, preset = resolve_default_weights(None, None, EFFICIENTNET_LITE0, weights=weights)
    assert preset == TRAINED_PRESET
    assert Path(anchornet).resolve() == (weights / "anchornet.pt").resolve()
    assert _split(downstream) == (
        EFFICIENTNET_LITE0,
        (weights / "efficientnet_lite0" / "downstream_patches.pt").resolve(),
    )


def test_trained_with_a_model_flag_or_without_its_weights_is_an_input_error(weights):
    with pytest.raises(InputError, match="drop --anchornet and --downstream"):
        resolve_default_weights(None, "resnet50", EFFICIENTNET_LITE0, weights=weights)
    with pytest.raises(InputError, match=r"no trained resnet18 .*\(trained downstreams there: efficientnet_lite0"):
        resolve_default_weights(None, None, "resnet18", weights=weights)


def test_without_the_downstream_weights_the_default_stays_untrained(weights):
    downstream_weights(weights, DEFAULT_ARCHITECTURE, "patches").unlink()
    assert resolve_default_weights(None, None, weights=weights) == (None, "efficientnet_lite0", PAPER_PRESET)


def test_any_flag_keeps_its_old_meaning(weights):
    assert resolve_default_weights(None, "resnet50", weights=weights) == (None, "resnet50", PAPER_PRESET)
    assert resolve_default_weights(Path("a.pt"), None, weights=weights) == (
        Path("a.pt"),
        "efficientnet_lite0",
        "accurate",
    )


def test_the_committed_weights_name_their_architecture_by_folder():
    """weights/ at the repository root holds AnchorNet and a trained downstream for the default architecture."""
    repository = Path(__file__).resolve().parents[2]
    assert WEIGHTS_DIR == repository / "weights" and (WEIGHTS_DIR / "anchornet.pt").is_file()
    assert DEFAULT_ARCHITECTURE in trained_architectures() and EFFICIENTNET_LITE0 in trained_architectures()
