"""Plan the TensorRT optimization profiles of a bundle's two engines, and their bundle.json records.

TensorRT tunes kernels for a profile's `opt` shape and accepts any shape
between `min` and `max`. The shapes here follow how the pipeline calls the
models (docs/method.md §5):

- AnchorNet sees whole 224x224 images: batch 1..max_batch, tuned for one
  image per call (`TYPICAL_IMAGES_PER_CALL`), the edge case of a camera
  handing over frame after frame.
- The downstream network sees patches grouped by size, one batch per size,
  so it gets one profile per patch size (B63, B95, B111 order) with batch
  1..max_patches, tuned for the number of patches LSP takes from one image
  at that size: the preset's K (paper section 4.1), capped at max_patches.
  A fourth profile runs it on the whole 224x224 image (the full-image
  baseline), batch 1..max_batch. Larger batches are split by the runtime.

Pure Python (no TensorRT), so the plan is testable anywhere; the engine
identity record lives with the runtime (`anchor_edge/backends/engine_identity.py`),
which must read it without the export stage installed.
"""
from __future__ import annotations

from typing import Sequence

from anchor_edge.errors import InputError
from anchor_edge.method.lsp import PRESETS
from anchor_edge.bundle.choices import Precision, Role
from anchor_edge.bundle.schema import EngineRecord, Manifest, Profile

#: The pipeline's typical call: one image (and that image's patches).
TYPICAL_IMAGES_PER_CALL = 1


def plan_profiles(manifest: Manifest, *, max_batch: int, max_patches: int, preset: str) -> dict[Role, list[Profile]]:
    """Both engines' profiles, keyed by model role.

    Args:
        manifest: the bundle's bundle.json.
        max_batch: most images per AnchorNet call (and per full-image downstream call).
        max_patches: most patches of one size per downstream call.
        preset: the LSP preset whose K sets the downstream's opt batch ("visual", "accurate").

    Returns:
        {"anchornet": [one profile], "downstream": [profiles for 63, 95, 111, then 224]}.

    Raises:
        InputError: for a non-positive limit, an unknown preset, or a model
            whose input is not one NCHW image.

    Example:
        >>> plan = plan_profiles(load_bundle("bundles/default").manifest, max_batch=8, max_patches=32, preset="accurate")
        >>> [p.opt[0] for p in plan[Role.DOWNSTREAM]]
        [24, 10, 8, 1]
    """
    _require_positive("max_batch", max_batch)
    _require_positive("max_patches", max_patches)
    if preset not in PRESETS:
        raise InputError(f"unknown LSP preset {preset!r}; choose one of {sorted(PRESETS)}")
    crop = manifest.preprocess.crop
    patch_sizes = [branch.receptive_field for branch in manifest.branches]
    anchornet_input, anchornet_channels = _single_input(manifest, Role.ANCHORNET)
    downstream_input, downstream_channels = _single_input(manifest, Role.DOWNSTREAM)

    typical_images = min(TYPICAL_IMAGES_PER_CALL, max_batch)
    downstream = []
    for size in patch_sizes:
        params = PRESETS[preset].get(size)
        if params is None:
            raise InputError(
                f"LSP preset {preset!r} has no parameters for patch size {size} (it has {sorted(PRESETS[preset])})"
            )
        typical_patches = min(params.max_patches, max_patches)
        downstream.append(_square_profile(downstream_input, downstream_channels, size, typical_patches, max_patches))
    downstream.append(_square_profile(downstream_input, downstream_channels, crop, typical_images, max_batch))
    return {
        Role.ANCHORNET: [_square_profile(anchornet_input, anchornet_channels, crop, typical_images, max_batch)],
        Role.DOWNSTREAM: downstream,
    }


def engine_record(
    *,
    file: str,
    sha256: str,
    onnx_sha256: str,
    precision: Precision,
    profiles: Sequence[Profile],
    tensorrt: str,
    gpu: str,
    compute_capability: str,
) -> EngineRecord:
    """One entry of bundle.json "engines": the file, its profiles and its identity.

    Example:
        >>> profile = Profile("image", (1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))
        >>> engine_record(file="anchornet.engine", sha256="...", onnx_sha256="...", precision=Precision.FP32,
        ...               profiles=[profile], tensorrt="10.3.0", gpu="Orin",
        ...               compute_capability="8.7").profiles[0].max
        (8, 3, 224, 224)
    """
    return EngineRecord(
        file=file, sha256=sha256, profiles=tuple(profiles), tensorrt=tensorrt, gpu=gpu,
        compute_capability=compute_capability, onnx_sha256=onnx_sha256, precision=Precision(precision),
    )


def _square_profile(name: str, channels: int, size: int, opt_batch: int, max_batch: int) -> Profile:
    """Batch 1..max_batch of size x size images, tuned for opt_batch."""
    return Profile(
        name, (1, channels, size, size), (opt_batch, channels, size, size), (max_batch, channels, size, size)
    )


def _single_input(manifest: Manifest, role: Role) -> tuple[str, int]:
    """Name and channel count of a model's only input (both bundle models take one NCHW image)."""
    inputs = manifest.models[role].inputs
    if len(inputs) != 1:
        raise InputError(f"bundle.json models.{role}.inputs must list exactly one input, got {inputs!r}")
    shape = inputs[0].shape
    if len(shape) != 4 or not isinstance(shape[1], int):
        raise InputError(
            f"bundle.json models.{role}.inputs[0].shape must be NCHW with a fixed channel count, got {shape!r}"
        )
    return inputs[0].name, shape[1]


def _require_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
