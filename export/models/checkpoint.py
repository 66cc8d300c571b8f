"""Read checkpoints safely and load them strictly, with errors that name the keys.

Every checkpoint goes through `torch.load(..., weights_only=True)`, which
refuses pickled code (argparse.Namespace is let through: timm's training
script stores its arguments, mean and std among them, as one, and it holds
plain values only). Loading is strict: a missing, unexpected or
mis-shaped tensor is reported by name with the checkpoint path, instead of
torch's wall of text.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from anchor_edge.errors import InputError


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint file.

    Accepted: a plain state_dict (no metadata), or a dict holding one under
    exactly one of "state_dict" or "model"; that dict's other entries (class
    names, pooling, ...) are returned as the metadata.
    """
    if not Path(path).is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        raise InputError(
            f"cannot read checkpoint {path} with torch.load(weights_only=True); save the model's "
            f"state_dict() rather than the pickled model. torch says: {err}"
        ) from err
    if not isinstance(raw, Mapping):
        raise InputError(f"checkpoint {path} holds a {type(raw).__name__}; expected a state_dict")
    if all(isinstance(value, torch.Tensor) for value in raw.values()):
        return dict(raw), {}
    wrappers = [key for key in ("state_dict", "model") if isinstance(raw.get(key), Mapping)]
    if len(wrappers) != 1 or not all(isinstance(v, torch.Tensor) for v in raw[wrappers[0]].values()):
        raise InputError(
            f"checkpoint {path} is neither a state_dict nor a dict with exactly one of 'state_dict' or "
            f"'model' holding one; its top-level keys are {first_few(list(raw))}"
        )
    return dict(raw[wrappers[0]]), {key: value for key, value in raw.items() if key != wrappers[0]}


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (see `read_checkpoint`), without its metadata."""
    return read_checkpoint(path)[0]


def strip_data_parallel(state_dict: Mapping[str, torch.Tensor], model_keys) -> dict[str, torch.Tensor]:
    """Drop the "module." prefix DataParallel puts on every key, unless the model's own keys have it."""
    prefix = "module."
    if (
        state_dict
        and all(k.startswith(prefix) for k in state_dict)
        and not all(k.startswith(prefix) for k in model_keys)
    ):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, naming the keys that do not fit instead of torch's wall of text."""
    expected = module.state_dict()
    state_dict = strip_data_parallel(state_dict, expected.keys())
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} in the checkpoint vs {tuple(v.shape)} in the network"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        f"{label}: {first_few(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if keys
    ]
    if problems:
        raise InputError(
            f"checkpoint {source} does not fit the network: {'; '.join(problems)}. "
            f"Check the model name, and num_classes when the classifier differs"
        )
    module.load_state_dict(state_dict)


def first_few(items: list[str], count: int = 5) -> str:
    shown = ", ".join(items[:count])
    return f"{shown} and {len(items) - count} more" if len(items) > count else shown
