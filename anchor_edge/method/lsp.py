"""Localizing Semantic Patches: from a branch heatmap to patch boxes (docs/method.md §2 and §4).

A branch with receptive field k and stride 8 sees, at map location (r, c),
the input box [8c, 8r, 8c + k, 8r + k) of the 224x224 network input (paper
section 3.1). LSP (paper Algorithm 1) walks the locations from the hottest
down and keeps a box only if it overlaps every kept box by IoU < T, so the
patches are both semantic and spread out; it stops at K boxes or after the
hottest fraction P of the locations.

LSP runs on every image right after AnchorNet, when the model run has left
the CPU caches cold and each numpy call costs several times what it costs
warm; past the one sort, the walk over the few candidates (at most 22 for
`visual`, 132 for `accurate`) is plain Python, which took well under half
the time of a numpy walk there (docs/performance.md).
"""

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError

# Added to H*W*P before the floor so a decimal coverage means what it says:
# 0.29 of 100 locations is 29 candidates, not the 28 that 0.29's binary value gives.
_COVERAGE_ROUNDING_SLACK = 1e-9


class LSPParams(NamedTuple):
    """One branch's LSP settings (paper section 4.1)."""

    max_patches: int  # K: at most this many boxes
    iou_threshold: float  # T: a box is kept only if its IoU with every kept box is < T
    coverage: float  # P: only the hottest max(1, floor(H*W*P)) locations are candidates


# docs/method.md §4's table, keyed by preset, then patch size (B63, B95, B111): `visual` and `accurate` are the
# paper's (section 4.1); `fast` is ours, the hottest location's box alone (K = 1, so T and P never matter), for
# images that hold one object (docs/decisions/024-one-patch-preset.md).
PRESETS: dict[str, dict[int, LSPParams]] = {
    "fast": {
        63: LSPParams(max_patches=1, iou_threshold=0.3, coverage=0.05),
        95: LSPParams(max_patches=1, iou_threshold=0.3, coverage=0.04),
        111: LSPParams(max_patches=1, iou_threshold=0.3, coverage=0.03),
    },
    "visual": {
        63: LSPParams(max_patches=5, iou_threshold=0.3, coverage=0.05),
        95: LSPParams(max_patches=3, iou_threshold=0.3, coverage=0.04),
        111: LSPParams(max_patches=2, iou_threshold=0.3, coverage=0.03),
    },
    "accurate": {
        63: LSPParams(max_patches=24, iou_threshold=0.8, coverage=0.3),
        95: LSPParams(max_patches=10, iou_threshold=0.8, coverage=0.3),
        111: LSPParams(max_patches=8, iou_threshold=0.8, coverage=0.3),
    },
}


def preset_params(preset: str | Mapping[int, LSPParams]) -> dict[int, LSPParams]:
    """A preset's {patch size: LSPParams}, by name or given as a mapping (`Pipeline.from_bundle(preset=...)`)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise InputError(
                f"unknown LSP preset {preset!r}; choose one of {sorted(PRESETS)} or pass {{size: LSPParams}}"
            )
        return PRESETS[preset]
    if not isinstance(preset, Mapping):
        raise InputError(f"preset must be a preset's name or {{patch size: LSPParams}}, got {preset!r}")
    return {positive_int("patch size", size): _checked(size, params) for size, params in preset.items()}


def check_lsp(lsp: Mapping[int, LSPParams], patch_sizes: list[int]) -> dict[int, LSPParams]:
    """`lsp` when it holds valid LSPParams for exactly the bundle's patch sizes: a setting for a size no branch has
    would be silently unused, and a bad value would fail only on the first image."""
    missing = [size for size in patch_sizes if size not in lsp]
    if missing:
        raise InputError(f"LSP parameters are missing for patch size(s) {missing}; give one LSPParams per branch")
    extra = [size for size in lsp if size not in patch_sizes]
    if extra:
        raise InputError(
            f"LSP parameters for patch size(s) {extra}, which no branch has; the bundle's are {patch_sizes}"
        )
    return {size: _checked(size, lsp[size]) for size in patch_sizes}


def _checked(size: object, params: object) -> LSPParams:
    """`params` as LSPParams, each value in its range (`select_patches`'s Args)."""
    try:
        checked = LSPParams(*params)  # type: ignore[misc]
    except TypeError:
        raise InputError(
            f"LSP parameters for patch size {size} must be (max_patches, iou_threshold, coverage), got {params!r}"
        ) from None
    positive_int("max_patches", checked.max_patches)
    _require_fraction("iou_threshold", checked.iou_threshold)
    _require_fraction("coverage", checked.coverage)
    return checked


def location_box(row: int, col: int, patch_size: int, stride: int = 8) -> tuple[int, int, int, int]:
    """The input box of map location (row, col), by the mapping rule (docs/method.md §2).

    Plain arithmetic on ints, unchecked: `select_patches` checks its
    arguments once and calls this for each candidate.

    Returns:
        (x0, y0, x1, y1) in network-input pixels, x1 and y1 exclusive.

    Example:
        >>> location_box(0, 1, 63)
        (8, 0, 71, 63)
    """
    x0, y0 = col * stride, row * stride
    return x0, y0, x0 + patch_size, y0 + patch_size


def select_patches(
    heatmap: np.ndarray,
    patch_size: int,
    stride: int = 8,
    *,
    max_patches: int,
    iou_threshold: float,
    coverage: float,
) -> np.ndarray:
    """Run LSP (paper Algorithm 1, exactly as docs/method.md §4) on one heatmap.

    1. Order the H*W locations by heat, descending; equal heat keeps
       row-major order (stable sort).
    2. The hottest location's box is always taken.
    3. The candidates are the first max(1, floor(H*W*coverage)) locations
       of that order, the hottest one included. Each later candidate's box
       is taken when its IoU with every box taken so far is strictly below
       `iou_threshold`. Selection stops as soon as `max_patches` boxes are
       taken.

    IoU counts pixels of the exclusive boxes: |A and B| / |A or B|.

    Args:
        heatmap: (H, W) finite heat of the chosen class (M = F[class]).
        patch_size: receptive field k of the heatmap's branch.
        stride: the branch's total stride.
        max_patches: K >= 1.
        iou_threshold: T in (0, 1].
        coverage: P in (0, 1].

    Returns:
        (n, 4) int64 boxes [x0, y0, x1, y1) in network-input pixels, in the
        order they were taken; 1 <= n <= max_patches.

    Example:
        >>> select_patches(np.array([[0.0, 1.0]]), 63, max_patches=2,
        ...                iou_threshold=0.5, coverage=1.0).tolist()
        [[8, 0, 71, 63]]
    """
    heat = np.asarray(heatmap)
    if heat.ndim != 2 or heat.size == 0:
        raise InputError(f"heatmap must be a non-empty 2-D (H, W) array, got shape {heat.shape}")
    if heat.dtype.kind not in "iuf":  # not bool, complex, strings or objects
        raise InputError(f"heatmap must hold real numbers, got dtype {heat.dtype}")
    if not np.isfinite(heat).all():
        raise InputError("heatmap contains NaN or infinity; check the model output")
    positive_int("patch_size", patch_size)
    positive_int("stride", stride)
    positive_int("max_patches", max_patches)
    _require_fraction("iou_threshold", iou_threshold)
    _require_fraction("coverage", coverage)

    if max_patches == 1:  # the hottest location alone: argmax takes the first maximum in row-major order, as step 1
        return np.array([location_box(*divmod(int(heat.argmax()), heat.shape[1]), patch_size, stride)], np.int64)
    num_candidates = max(1, math.floor(heat.size * coverage + _COVERAGE_ROUNDING_SLACK))
    # Negating a float copy sorts descending; a stable sort keeps row-major order on ties.
    order = np.argsort(-heat.astype(np.float64).ravel(), kind="stable")[:num_candidates].tolist()

    # Plain Python over the few candidates (module docstring): every box has the same size, so
    # |A or B| = 2 k^2 - |A and B|, and a candidate is taken when no box taken before blocks it.
    area = patch_size * patch_size
    taken: list[tuple[int, int, int, int]] = []
    for location in order:
        box = location_box(*divmod(location, heat.shape[1]), patch_size, stride)
        for kept in taken:
            overlap = max(0, patch_size - abs(box[0] - kept[0])) * max(0, patch_size - abs(box[1] - kept[1]))
            if overlap / (2 * area - overlap) >= iou_threshold:
                break
        else:
            taken.append(box)
            if len(taken) == max_patches:
                break
    return np.array(taken, dtype=np.int64)


def _require_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value <= 1:
        raise InputError(f"{name} must be a number in (0, 1], got {value!r}")
