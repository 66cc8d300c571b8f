"""Which weights `python export/to_trt.py` exports when it is given none, or only `--trained ARCH`.

The repository commits trained weights (`python -m export.train` makes them,
export/models/trained_weights.py says where): a 10-class AnchorNet trained on
the digits benchmark, and per downstream architecture a network fine-tuned
on the patches it localizes. With neither --anchornet nor --downstream on the
command line, the AnchorNet and the default architecture's downstream make
the default bundle, so it is trained out of the box; `--trained ARCH` takes
another architecture's trained pair (efficientnet_lite0: the light one).
A trained pair comes with the LSP preset it pays with (`TRAINED_PRESET`);
`--preset` still overrides it. Any other flag keeps its old meaning: an unnamed AnchorNet is freshly
initialised and an unnamed downstream is EfficientNet-Lite0, so
`--downstream resnet50` still gives a 1000-class random latency bundle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from anchor_edge.errors import InputError
from export.models.downstream import DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE0
from export.models.trained_weights import ANCHORNET_FILE, WEIGHTS_DIR, downstream_weights, trained_architectures

UNTRAINED_DOWNSTREAM = EFFICIENTNET_LITE0
#: The preset of a trained pair's bundle. On the digits benchmark `accurate` spends about twice the full image's
#: downstream multiply-adds on patches (its 24 + 10 + 8 patches suit the paper's large photos), so it cannot pay;
#: a digits image holds one object, and its hottest patch alone (`fast`) classified as well as `visual`'s up to
#: 5 on draws no benchmark reports, in one downstream call of one patch (docs/decisions/024-one-patch-preset.md).
TRAINED_PRESET = "fast"
#: The preset of any other bundle: the paper's.
PAPER_PRESET = "accurate"


class ModelChoice(NamedTuple):
    """What to export: the AnchorNet checkpoint (None: freshly initialised), the downstream spec, the LSP preset."""

    anchornet: Path | None
    downstream: str
    preset: str


def resolve_default_weights(
    anchornet: Path | None, downstream: str | None, trained: str | None = None, weights: Path = WEIGHTS_DIR
) -> ModelChoice:
    """The models to export and their default preset, given the flags (None: not given)."""
    trained_anchornet = weights / ANCHORNET_FILE
    if trained is not None:
        if anchornet is not None or downstream is not None:
            raise InputError("--trained names both models; drop --anchornet and --downstream, or --trained")
        patches = downstream_weights(weights, trained, "patches")
        if not (trained_anchornet.is_file() and patches.is_file()):
            have = ", ".join(trained_architectures(weights)) or "none"
            raise InputError(
                f"no trained {trained} in {weights} (trained downstreams there: {have}); "
                f"train one with: python -m export.train"
            )
        return ModelChoice(_short(trained_anchornet), f"{trained}:{_short(patches)}", TRAINED_PRESET)
    patches = downstream_weights(weights, DEFAULT_ARCHITECTURE, "patches")
    if anchornet is None and downstream is None and trained_anchornet.is_file() and patches.is_file():
        return ModelChoice(_short(trained_anchornet), f"{DEFAULT_ARCHITECTURE}:{_short(patches)}", TRAINED_PRESET)
    return ModelChoice(anchornet, downstream if downstream is not None else UNTRAINED_DOWNSTREAM, PAPER_PRESET)


def _short(path: Path) -> Path:
    """Relative to the working directory when inside it, so bundle.json does not record this machine's paths."""
    relative = os.path.relpath(path)
    return Path(relative) if not relative.startswith("..") else path
