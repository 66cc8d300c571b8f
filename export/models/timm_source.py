"""timm models as downstream networks (`timm:NAME[:CKPT]`), fed the way their own config says.

timm, the model zoo most users train with, records per model and pretrained
tag the preprocessing its weights expect (`pretrained_cfg`: mean and std on
the 0-1 scale, interpolation, whether the input size is fixed). Those values
are read here instead of assuming ImageNet's, so a network trained with mean
0.5 is not fed ImageNet's normalisation without a word.

Nothing downloads: models are built with ``pretrained=False`` and take random
weights or those of a checkpoint file. A checkpoint written by timm's
training script also records the mean and std it trained with (in its
``args``); those win over the config's when set, and its ``arch`` must be the
named model.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch

from anchor_edge.errors import InputError
from export.models.checkpoint import load_weights, read_checkpoint
from export.models.downstream import Downstream, checkpoint_class_names, classes_in_checkpoint

_PIXEL_SCALE = 255.0  # timm writes mean and std on the 0-1 scale; bundles hold 0-255 pixel units


def load_timm(name: str, checkpoint: str | None, num_classes: int | None) -> Downstream:
    """The timm model `name` with random weights or `checkpoint`'s, its preprocessing from timm's config.

    Raises:
        InputError: timm is not installed, the name is unknown, the model has
            a fixed input size (it cannot classify 63 px patches), or the
            checkpoint does not fit it.
    """
    timm = _import_timm()
    if not timm.is_model(name):
        hint = difflib.get_close_matches(name, timm.list_models(), n=3)
        did_you_mean = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise InputError(f"timm has no model {name!r} (timm.list_models() lists them){did_you_mean}")

    def build(classes: int) -> torch.nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=classes)

    extras: dict[str, Any] = {}
    if checkpoint is None:
        module, pretrained = build(num_classes or 1000), "random"
    else:
        state_dict, extras = read_checkpoint(checkpoint)
        _check_architecture(name, extras, checkpoint)
        classes = num_classes or classes_in_checkpoint(f"timm:{name}", build, state_dict, checkpoint)
        module, pretrained = build(classes), f"checkpoint:{checkpoint}"
        load_weights(module, state_dict, checkpoint)
    module.eval()
    downstream = Downstream(
        module=module,
        name=f"timm:{name}",
        num_classes=int(module.num_classes),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        class_names=None,
        pretrained=pretrained,
    )
    downstream = with_timm_config(downstream, module.pretrained_cfg, _training_args(extras))
    class_names = checkpoint_class_names(extras, downstream.num_classes, checkpoint) if checkpoint else None
    if class_names is None:
        return downstream
    return downstream._replace(class_names=class_names, stated=downstream.stated | {"class_names"})


def with_timm_config(
    downstream: Downstream, config: Mapping[str, Any], args: Mapping[str, Any] | None = None
) -> Downstream:
    """`downstream` with the mean, std (to 0-255), interpolation and RGB order of a timm pretrained_cfg.

    `args` are timm's training arguments from a checkpoint; a mean or std set
    there is what the weights were actually trained with.
    """
    if config.get("fixed_input_size"):
        raise InputError(
            f"{downstream.name} has a fixed input size {tuple(config.get('input_size', ()))} (fixed_input_size in "
            "its timm pretrained_cfg, e.g. position embeddings of a vision transformer), so it cannot classify "
            "63, 95 and 111 px patches; choose a convolutional network that pools globally"
        )
    args = args or {}
    mean = args.get("mean") or config["mean"]
    std = args.get("std") or config["std"]
    if len(mean) != 3 or len(std) != 3:
        raise InputError(
            f"{downstream.name}: timm config gives mean {mean} and std {std}; need three values each (RGB)"
        )
    return downstream._replace(
        mean=tuple(float(m) * _PIXEL_SCALE for m in mean),
        std=tuple(float(s) * _PIXEL_SCALE for s in std),
        channel_order="RGB",
        interpolation=args.get("interpolation") or config.get("interpolation"),
        stated=downstream.stated | {"mean", "std", "channel_order"},
    )


def _import_timm():
    try:
        import timm
    except ImportError as err:
        raise InputError(f"timm:NAME needs timm ({err}); install the export extra: pip install -e '.[export]'") from err
    return timm


def _training_args(extras: Mapping[str, Any]) -> dict[str, Any]:
    """timm's training arguments stored in a checkpoint (an argparse.Namespace under "args"), as a dict."""
    args = extras.get("args")
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def _check_architecture(name: str, extras: Mapping[str, Any], checkpoint: str) -> None:
    """timm's training script records the model it trained ("arch", from its args); another one is the wrong spec."""
    arch = extras.get("arch") if "args" in extras else None
    if isinstance(arch, str) and arch.split(".")[0] != name.split(".")[0]:
        raise InputError(
            f"checkpoint {checkpoint} holds timm model {arch!r}, not {name!r}; use timm:{arch}:{checkpoint}"
        )
