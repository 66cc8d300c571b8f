"""Which weights `python export/to_trt.py` exports when it is given none.

The repository commits trained weights in weights/ (`python -m export.train`
makes them): a 10-class AnchorNet trained on the digits benchmark and a
EfficientNet-Lite0 fine-tuned on the patches it localizes. With neither
--anchornet nor --downstream on the command line, those two make the default
bundle, so it is trained out of the box. Any flag given keeps the old
meaning: an unnamed AnchorNet is freshly initialised and an unnamed
downstream is EfficientNet-Lite0, so `--downstream resnet50` still gives the
1000-class latency bundle.
"""
from __future__ import annotations

import os
from pathlib import Path

from export.models.downstream import DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE0

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
ANCHORNET_WEIGHTS = WEIGHTS_DIR / "anchornet.pt"
DOWNSTREAM_WEIGHTS = WEIGHTS_DIR / "downstream_patches.pt"
#: What python -m export.train trains into weights/.
DOWNSTREAM_ARCHITECTURE = DEFAULT_ARCHITECTURE
UNTRAINED_DOWNSTREAM = EFFICIENTNET_LITE0


def resolve_default_weights(anchornet: Path | None, downstream: str | None) -> tuple[Path | None, str]:
    """The (AnchorNet checkpoint, downstream spec) to export, given the flags (None: not given)."""
    if anchornet is None and downstream is None and ANCHORNET_WEIGHTS.is_file() and DOWNSTREAM_WEIGHTS.is_file():
        return _short(ANCHORNET_WEIGHTS), f"{DOWNSTREAM_ARCHITECTURE}:{_short(DOWNSTREAM_WEIGHTS)}"
    return anchornet, downstream if downstream is not None else UNTRAINED_DOWNSTREAM


def _short(path: Path) -> Path:
    """Relative to the working directory when inside it, so bundle.json does not record this machine's paths."""
    relative = os.path.relpath(path)
    return Path(relative) if not relative.startswith("..") else path
