"""Plan the TensorRT optimization profiles of a bundle's two models, for its own engines and ONNX Runtime's alike.

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

It lives with the runtime, not the export stage, because two builders use
it: `export/engines/build.py` for the bundle's own engines, and ONNX
Runtime's TensorRT provider, which builds its engines on the device when a
bundle is opened (`anchor_edge/backends/ort_tensorrt.py`). Pure Python (no
TensorRT), so the plan is testable anywhere.
"""

from __future__ import annotations

from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import Manifest, Profile
from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError
from anchor_edge.method.lsp import PRESETS

#: The pipeline's typical call: one image (and that image's patches).
TYPICAL_IMAGES_PER_CALL = 1
#: Most images per AnchorNet (and full-image downstream) call, unless the engine build says otherwise.
DEFAULT_MAX_BATCH = 8
#: Most patches of one size per downstream call, unless the engine build says otherwise.
DEFAULT_MAX_PATCHES = 32


def plan_profiles(manifest: Manifest, *, max_batch: int, max_patches: int, preset: str) -> dict[Role, list[Profile]]:
    """Both models' profiles, keyed by model role.

    Args:
        manifest: the bundle's bundle.json.
        max_batch: most images per AnchorNet call (and per full-image downstream call).
        max_patches: most patches of one size per downstream call.
        preset: the LSP preset whose K sets the downstream's opt batch ("fast", "visual", "accurate").

    Returns:
        {"anchornet": [one profile], "downstream": [profiles for 63, 95, 111, then 224]}.

    Raises:
        InputError: for a non-positive limit, an unknown preset, or a model
            whose input is not one NCHW image.

    Example:
        >>> manifest = load_bundle("bundles/default").manifest
        >>> plan = plan_profiles(manifest, max_batch=8, max_patches=32, preset="accurate")
        >>> [p.opt[0] for p in plan[Role.DOWNSTREAM]]
        [24, 10, 8, 1]
    """
    positive_int("max_batch", max_batch)
    positive_int("max_patches", max_patches)
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
