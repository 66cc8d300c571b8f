"""AnchorNet from a checkpoint (or freshly initialised), with what the checkpoint says about itself.

The training recipe (export/training/anchornet.py) writes a dict holding the
state_dict beside "num_classes", "pooling", "class_names", "trained" and
"branch_rule" and "heatmap" (how its branches choose patches: "widest" and
"max" when it was trained without boxes, anchor_edge.bundle.choices); a
plain state_dict is accepted too. Flags given on the command line must agree
with what the checkpoint records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from anchor_edge.bundle.choices import BranchRule, Heatmap
from anchor_edge.errors import InputError
from anchor_edge.method.decision import check_branch_rule
from anchor_edge.method.patches import check_heatmap
from export.models.anchornet import AnchorNet
from export.models.checkpoint import load_weights, read_checkpoint, strip_data_parallel

#: The first branch's logit conv, whose rows are AnchorNet's classes.
CLASSIFIER_KEY = "branches.0.classifier.weight"


@dataclass(frozen=True)
class LoadedAnchorNet:
    """The module in eval mode, where it came from ("random" or "checkpoint:<path>"), its class names if known, and
    its branch rule and heatmap (the checkpoint's; the paper's "confident" and "class" where none is recorded)."""

    module: AnchorNet
    source: str
    trained: bool
    class_names: list[str] | None
    branch_rule: BranchRule = BranchRule.CONFIDENT
    heatmap: Heatmap = Heatmap.CLASS


def load_anchornet(checkpoint: Path | None, num_classes: int | None, pooling: str | None) -> LoadedAnchorNet:
    """AnchorNet from `checkpoint`, or freshly initialised (seeded) when there is none."""
    if checkpoint is None:
        torch.manual_seed(0)
        model = AnchorNet(num_classes=num_classes or 1000, pooling=pooling or "gap")
        return LoadedAnchorNet(model.eval(), "random", False, None)
    state_dict, extras = read_checkpoint(str(checkpoint))
    state_dict = strip_data_parallel(state_dict, (CLASSIFIER_KEY,))  # AnchorNet's own keys have no "module."
    saved_classes = extras["num_classes"] if "num_classes" in extras else state_dict_classes(state_dict, checkpoint)
    if num_classes is not None and num_classes != saved_classes:
        raise InputError(f"--num-classes {num_classes} disagrees with {checkpoint}, which has {saved_classes} classes")
    model = AnchorNet(num_classes=saved_classes, pooling=pooling or extras.get("pooling", "gap"))
    load_weights(model, state_dict, str(checkpoint))
    names = extras.get("class_names")
    trained = bool(extras.get("trained", True))
    rule = check_branch_rule(extras.get("branch_rule", BranchRule.CONFIDENT))
    heatmap = check_heatmap(extras.get("heatmap", Heatmap.CLASS))
    return LoadedAnchorNet(model.eval(), f"checkpoint:{checkpoint}", trained, names, rule, heatmap)


def state_dict_classes(state_dict: dict, source: object) -> int:
    """Number of classes of an AnchorNet state_dict, read from the first branch's logit conv.

    Raises:
        InputError: it has no such conv: not an AnchorNet's weights.
    """
    weight = state_dict.get(CLASSIFIER_KEY)
    if weight is None:
        raise InputError(
            f"{source} is not an AnchorNet checkpoint (no {CLASSIFIER_KEY}); give the file "
            "export.train wrote (anchornet.pt)"
        )
    return int(weight.shape[0])
