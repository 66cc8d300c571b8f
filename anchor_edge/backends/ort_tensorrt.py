"""ONNX Runtime's TensorRT provider, set up from the bundle: profiles, an engine cache inside it, precision flags.

Left to itself the provider builds an engine for the first input shape it
sees and rebuilds it whenever a later shape falls outside
(onnxruntime#3904). The downstream network's batch is the number of patches
LSP took from an image, which changes image by image, so every few images
would stall for an engine build. Here each model gets, as the provider's
explicit profiles (`trt_profile_min_shapes`, `..._opt_shapes`,
`..._max_shapes`), the profiles the bundle's own engines are built with:
those recorded in bundle.json when the bundle has engines, else the same
plan with the engine build's defaults (`anchor_edge/backends/trt/profiles.py`:
the downstream network one profile per patch size 63, 95, 111 and one for the
whole 224 image; AnchorNet one). Batches above a profile's maximum are split
by the runner (`OrtRunner`), as the TensorRT backend does.

The engines are cached (`trt_engine_cache_path`) in a folder of the bundle,
one per model and machine, named by everything whose change makes an engine
invalid, as the bundle's own engines are keyed
(`anchor_edge/backends/trt/identity.py`): the ONNX file's sha256, its
precision, the TensorRT version, the GPU and its compute capability, plus
the onnxruntime version (its cache format is its own). A changed model or
machine gets a new folder, never a stale engine.

Precision is the graph's, as for the bundle's own engines: an fp16 model
switches on `trt_fp16_enable`; an int8 model, whose graph holds its scales
as Q/DQ pairs, `trt_int8_enable` with no calibration table (TensorRT refuses
a table for a graph with Q/DQ nodes). Only symmetric int8 (exported with
`--int8-target tensorrt`) runs on TensorRT; a bundle quantized for the CPU
is refused with an InputError saying how to re-export it.

`tensorrt_provider_options` is pure (bundle, role, machine, options in;
the provider's options out), so all of this is tested without a GPU;
`tensorrt_provider` reads the machine and creates the cache folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from anchor_edge.backends.ort_providers import ProviderOptions
from anchor_edge.backends.trt.profiles import DEFAULT_MAX_BATCH, DEFAULT_MAX_PATCHES, plan_profiles
from anchor_edge.bundle.choices import Int8Target, Precision, Role
from anchor_edge.bundle.load import Bundle
from anchor_edge.bundle.schema import ModelEntry, Profile
from anchor_edge.errors import BackendError, BundleError, InputError

#: The folder inside the bundle that holds the provider's engines, one subfolder per model and machine.
CACHE_FOLDER = "ort-tensorrt"
#: The profile bounds, in the order of the provider's options.
_BOUNDS = ("min", "opt", "max")


class TensorrtMachine(NamedTuple):
    """What, beside the model, an engine of ONNX Runtime's TensorRT provider is valid for."""

    onnxruntime: str
    tensorrt: str
    gpu: str
    compute_capability: str


class TensorrtProvider(NamedTuple):
    """The provider's options for one model, and the profiles they hold (the runner splits batches by them)."""

    options: dict[str, Any]
    profiles: tuple[Profile, ...]


def tensorrt_provider_options(
    bundle: Bundle, role: Role, machine: TensorrtMachine, options: ProviderOptions = ProviderOptions()
) -> dict[str, Any]:
    """ONNX Runtime's TensorRT provider options for the `role` model of `bundle` on `machine`.

    Args:
        bundle: the loaded bundle.
        role: which of its models.
        machine: onnxruntime and TensorRT versions, GPU and compute capability (`detect_machine`).
        options: `tensorrt_cache`, a folder for the engine caches; None keeps them inside the bundle.

    Returns:
        The provider's options: engine cache on and its folder, the fp16 and int8 switches, and the
        min, opt and max shapes of every profile.

    Raises:
        InputError: an int8 model quantized for the CPU, or one without Q/DQ nodes.
        BundleError: an int8 model with no int8 record.

    Example:
        >>> machine = TensorrtMachine("1.20.1", "10.3.0", "Orin", "8.7")
        >>> options = tensorrt_provider_options(load_bundle("bundles/default"), Role.DOWNSTREAM, machine)
        >>> options["trt_profile_min_shapes"]
        'image:1x3x63x63,image:1x3x95x95,image:1x3x111x111,image:1x3x224x224'
    """
    role = Role(role)
    model = bundle.manifest.models[role]
    profiles = profiles_for(bundle, role)
    root = bundle.root / CACHE_FOLDER if options.tensorrt_cache is None else Path(options.tensorrt_cache)
    return {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(root / cache_key(role, model, machine)),
        **precision_flags(role, model),
        **{f"trt_profile_{bound}_shapes": profile_shapes(profiles, bound) for bound in _BOUNDS},
    }


def tensorrt_provider(bundle: Bundle, role: Role, options: ProviderOptions = ProviderOptions()) -> TensorrtProvider:
    """The provider's options and profiles for one model of `bundle` on this machine, its cache folder created.

    Raises:
        BackendError: TensorRT, pycuda or a GPU is missing, or the cache folder cannot be created.
        InputError: as `tensorrt_provider_options`.
    """
    provider_options = tensorrt_provider_options(bundle, role, detect_machine(), options)
    folder = Path(provider_options["trt_engine_cache_path"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(
            f"cannot create ONNX Runtime's TensorRT engine cache {folder} ({exc}); give a writable folder with "
            "provider_options=ProviderOptions(tensorrt_cache=...)"
        ) from exc
    return TensorrtProvider(provider_options, profiles_for(bundle, Role(role)))


def profiles_for(bundle: Bundle, role: Role) -> tuple[Profile, ...]:
    """The profiles of the bundle's own `role` engine when it has one, else the plan with the build's defaults."""
    engine = bundle.manifest.engines[role]
    if engine is not None and engine.profiles:
        return engine.profiles
    plan = plan_profiles(
        bundle.manifest, max_batch=DEFAULT_MAX_BATCH, max_patches=DEFAULT_MAX_PATCHES, preset=bundle.preset
    )
    return tuple(plan[role])


def profile_shapes(profiles: tuple[Profile, ...], bound: str) -> str:
    """One bound of every profile, as the provider reads it: "input:1x3x63x63,input:1x3x95x95" (a profile each).

    Raises:
        InputError: an input name the provider's format cannot carry (it holds ',' or ':').
    """
    for profile in profiles:
        if "," in profile.input or ":" in profile.input:
            raise InputError(
                f"input {profile.input!r} cannot be named in ONNX Runtime's TensorRT profile options, which separate "
                "inputs by ',' and names by ':'; re-export the model with another input name"
            )
    return ",".join(f"{p.input}:{'x'.join(str(d) for d in getattr(p, bound))}" for p in profiles)


def precision_flags(role: Role, model: ModelEntry) -> dict[str, bool]:
    """The provider's fp16 and int8 switches for a model of this precision (the graph decides, as for engines).

    Raises:
        InputError: an int8 model TensorRT cannot run as it is, saying how to re-export it.
        BundleError: an int8 model with no int8 record.
    """
    if model.precision is Precision.FP32:
        return {"trt_fp16_enable": False, "trt_int8_enable": False}
    if model.precision is Precision.FP16:
        return {"trt_fp16_enable": True, "trt_int8_enable": False}
    record = model.int8
    if record is None:
        raise BundleError(f"bundle.json models.{role} is int8 but has no int8 record; re-export the bundle")
    if record.format != "QDQ":
        raise InputError(
            f"models.{role} is int8 in {record.format} form, without Q/DQ nodes, and the bundle has no TensorRT "
            "calibration table; re-export it with --precision "
            f"{role}=int8 --int8-target tensorrt (Q/DQ nodes carry the scales)"
        )
    if record.target is not Int8Target.TENSORRT:
        raise InputError(
            f"models.{role} was quantized for ONNX Runtime's CPU ({record.activations} activations); TensorRT runs "
            f"only symmetric int8: re-export with --precision {role}=int8 --int8-target tensorrt, or run this bundle "
            "with providers='cpu'"
        )
    return {"trt_fp16_enable": False, "trt_int8_enable": True}


def cache_key(role: Role, model: ModelEntry, machine: TensorrtMachine) -> str:
    """The engine cache subfolder of one model on one machine: every field whose change invalidates the engine.

    Example:
        >>> cache_key(Role.ANCHORNET, bundle.anchornet, TensorrtMachine("1.20.1", "10.3.0", "NVIDIA Orin", "8.7"))
        'anchornet_fp32_111111111111_ort1.20.1_trt10.3.0_NVIDIA-Orin_sm87'
    """
    return "_".join(
        (
            str(role),
            str(model.precision),
            model.sha256[:12],
            f"ort{_slug(machine.onnxruntime)}",
            f"trt{_slug(machine.tensorrt)}",
            _slug(machine.gpu),
            f"sm{_slug(machine.compute_capability).replace('.', '')}",
        )
    )


def detect_machine() -> TensorrtMachine:
    """This machine's onnxruntime and TensorRT versions, GPU and compute capability (device 0).

    TensorRT's version is read from the tensorrt package, which must be the one whose libraries ONNX Runtime loads.

    Raises:
        BackendError: tensorrt, pycuda or a GPU is missing, saying what to install.
    """
    import onnxruntime

    from anchor_edge.backends.trt.environment import INSTALL_HINT, machine_identity, tensorrt_available

    available, reason = tensorrt_available()
    if not available:
        raise BackendError(
            f"ONNX Runtime's TensorRT provider caches engines per TensorRT version and GPU, which this SDK reads "
            f"with the tensorrt and pycuda packages: {reason}. {INSTALL_HINT}; or use providers='cuda'"
        )
    return TensorrtMachine(onnxruntime=onnxruntime.__version__, **machine_identity())


def _slug(text: str) -> str:
    """A file-name-safe form: runs of anything but letters, digits, '.' and '-' become one '-'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")
