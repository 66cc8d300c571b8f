"""The user's own downstream network on their folder: whether it is trained, and how its new weights are named.

`python -m export.train --data DIR --downstream SPEC` takes every spec
`export/to_trt.py --downstream` takes that names a network and its weights
apart (NAME[:CKPT], timm:NAME[:CKPT], MODULE:CALLABLE[:CKPT];
`export.models.downstream.split_checkpoint`). With a checkpoint the network
counts as trained: it teaches AnchorNet as given. Without one it is the
network's own start (random, or EfficientNet-Lite0's ImageNet backbone) and
is first trained on the folder's whole images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from anchor_edge.errors import InputError
from export.models.downstream import Downstream, load_downstream, split_checkpoint
from export.training.common import Normalization


class UserDownstream(NamedTuple):
    """The spec as given, its network part, the folder its trained weights go to, and whether it came trained."""

    spec: str
    network: str
    folder: str
    trained: bool

    def with_weights(self, checkpoint: Path) -> str:
        """The spec of this network with other weights (a step's output)."""
        return f"{self.network}:{checkpoint}"

    def load(self, class_names: tuple[str, ...], spec: str | None = None) -> Downstream:
        """The network (of `spec`, by default the user's) for the folder's classes.

        Raises:
            InputError: it cannot be built or loaded, it has another class count,
                or its checkpoint names other classes (or the same in another order).
        """
        spec = spec or self.spec
        try:
            loaded = load_downstream(spec, num_classes=len(class_names))
        except InputError as error:
            classes = ", ".join(class_names)
            raise InputError(f"{error} (the folder has {len(class_names)} classes: {classes})") from error
        if loaded.class_names is not None and tuple(loaded.class_names) != tuple(class_names):
            raise InputError(
                f"downstream {spec} was trained on the classes {loaded.class_names}, the folder's are "
                f"{list(class_names)} (class folders sorted by name); train on a folder with the same classes, or "
                "rename its class folders"
            )
        if loaded.channel_order != "RGB":
            raise InputError(
                f"downstream {spec} takes {loaded.channel_order} input; training feeds RGB: give a "
                "network that takes RGB"
            )
        return loaded


def open_user_downstream(spec: str) -> UserDownstream:
    """Parse the spec (FILE specs are refused: `split_checkpoint`)."""
    network, checkpoint = split_checkpoint(spec)
    return UserDownstream(spec, network, re.sub(r"[^\w.-]+", "_", network), checkpoint is not None)


def normalization_of(downstream: Downstream) -> Normalization:
    """The network's (mean, std) per RGB channel, pixels 0-255, as the bundle records them."""
    return downstream.mean, downstream.std
