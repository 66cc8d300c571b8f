"""A file that holds a whole network (`--downstream model.pt`): TorchScript, or a pickled module on request.

A TorchScript archive carries its own code as TorchScript, which
`torch.jit.load` compiles without running Python from the file, so it is
loaded as given. A whole pickled module (`torch.save(model)`) runs arbitrary
code from the file when loaded, so it is refused unless the caller passes
allow_pickle (`--allow-pickle`) for a file they trust. A state_dict names no
architecture, and the error says how to give one.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from anchor_edge.errors import InputError
from export.models.downstream import Downstream, downstream_from_module


def load_torch_file(path: Path, num_classes: int | None, *, allow_pickle: bool) -> Downstream:
    """The network in `path`: TorchScript, or (with `allow_pickle`) a pickled nn.Module.

    Raises:
        InputError: the file is missing, is a state_dict, is a pickled module
            without `allow_pickle`, or does not hold a classifier.
    """
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise InputError(f"cannot load TorchScript file {path}: {err}") from err
        return downstream_from_module(module, name=path.name, pretrained=f"torchscript:{path}", num_classes=num_classes)
    try:
        torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError):
        pass  # not plain tensors: a pickled object, handled below
    else:
        raise InputError(
            f"{path} holds weights only (a state_dict), not a network; name its architecture: "
            f"NAME:{path}, timm:NAME:{path} or MODULE:CALLABLE:{path}"
        )
    if not allow_pickle:
        raise InputError(
            f"{path} is a whole pickled model; loading it runs code stored in the file. Pass --allow-pickle "
            "(allow_pickle=True) if you trust it, or save it as TorchScript (torch.jit.script(model).save) "
            "or its state_dict() with its architecture"
        )
    module = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{path} holds a pickled {type(module).__name__}, not a torch.nn.Module")
    return downstream_from_module(module, name=path.name, pretrained=f"pickled:{path}", num_classes=num_classes)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold their compiled code under code/; torch.save's archives hold data.pkl only."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())
