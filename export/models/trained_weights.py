"""Where trained weights live: weights/anchornet.pt, and weights/<architecture>/downstream_<step>.pt.

The folder name is the architecture the files are for, so a checkpoint
never has to be matched to its network by a constant elsewhere: the
default export, the baselines and the training recipes all find a
downstream by (architecture, step) through `downstream_weights`.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's committed weights, found from this module's location wherever the checkout sits.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
ANCHORNET_FILE = "anchornet.pt"


def downstream_weights(root: Path, architecture: str, step: str) -> Path:
    """The weights step `step` ("full", "patches", ...) of `architecture`'s recipe leaves under `root`."""
    return root / architecture / f"downstream_{step}.pt"


def trained_architectures(root: Path = WEIGHTS_DIR) -> list[str]:
    """The architectures with a patch-tuned downstream under `root`, by name."""
    return sorted(p.parent.name for p in root.glob("*/downstream_patches.pt"))
