"""What the pipeline costs per image in multiply-adds, from what it actually chose on the photos.

The patch count depends on the heatmap (LSP stops early when boxes overlap),
so the cost of the method is a property of the images as much as of the
networks: it is counted here from the pipeline's own choices, with the
multiply-adds the export stage recorded in bundle.json
(models.anchornet.multiply_adds, models.downstream.multiply_adds[size]).
docs/method.md §6 gives the paper's counterparts: 5.6, 2.9 and 2.1 patches per
image for B63, B95 and B111 with the `accurate` preset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from anchor_edge.bundle import Bundle
from anchor_edge.method.budget import bundle_costs
from benchmarks.items import Choice


def cost_accounting(bundle: Bundle, chosen: Sequence[Choice]) -> dict:
    """Images per branch, patches per image (mean, per-branch mean and histogram), multiply-adds per image."""
    per_branch: dict[str, Counter] = {}
    for choice in chosen:
        per_branch.setdefault(str(choice.patch_size), Counter())[choice.patches] += 1
    costs: dict = {
        "images": len(chosen),
        "images_per_branch": {size: sum(hist.values()) for size, hist in sorted(per_branch.items(), key=_size)},
        "patches_per_image": {
            "mean": float(np.mean([c.patches for c in chosen])),
            "per_branch_mean": {
                size: sum(n * count for n, count in hist.items()) / sum(hist.values())
                for size, hist in sorted(per_branch.items(), key=_size)
            },
            "histogram": {
                size: {str(n): count for n, count in sorted(hist.items())}
                for size, hist in sorted(per_branch.items(), key=_size)
            },
        },
    }
    anchornet = int(bundle.anchornet.multiply_adds)
    downstream, full = bundle_costs(bundle)
    patches = float(np.mean([c.patches * downstream[c.patch_size] for c in chosen]))
    resized = float(np.mean([downstream[c.patch_size] for c in chosen]))
    costs["multiply_adds"] = {
        "anchornet": anchornet,
        "patches_mean": patches,
        "pipeline_mean": anchornet + patches,
        "full_image": full,
        "resized_mean": resized,
        "anchornet_over_full": anchornet / full,
        "pipeline_over_full": (anchornet + patches) / full,
        "patches_over_full": patches / full,
    }
    return costs


def _size(item: tuple[str, object]) -> int:
    return int(item[0])
