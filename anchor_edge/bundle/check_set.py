"""The check set: does what runs on this device give the answers the FP32 export gave? (`anchor-edge verify`)

A bundle built on a PC and run on a Jetson (another backend, an engine built
there, FP16, INT8, OpenVINO bf16) can drift from what was checked at export.
So the export stores a small check set in the bundle (`CheckSet`: held-out
images and the FP32 pipeline's outputs on them, a few MB), and `verify`
runs the whole Pipeline on the chosen backend over those images, reports
top-1 agreement with the FP32 classes and the largest differences of
AnchorNet's probabilities and of the class distribution, records the result
in bundle.json (`verified`, one entry per backend setting) and fails below
a floor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.bundle.load import load_bundle, sha256_of
from anchor_edge.bundle.schema import MANIFEST_NAME, CheckSet, VerifyResult, manifest_text, read_manifest
from anchor_edge.errors import BundleError, InputError
from anchor_edge.method.preprocess import resize_and_crop

CHECK_FILE = "check.npz"
#: Images in the check set: enough to see a drift in top-1, few enough to stay a few MB.
CHECK_IMAGES = 16
DEFAULT_MIN_AGREEMENT = 0.95


def write_check_set(bundle_dir: Path, images: Sequence[tuple[str, np.ndarray]], source: str) -> CheckSet:
    """Run the FP32 bundle in `bundle_dir` on ONNX Runtime's CPU over `images` and store the check set beside it."""
    from anchor_edge.pipeline import Pipeline

    if not images:
        raise InputError("the check set needs at least one image")
    with Pipeline.from_bundle(bundle_dir, backend="onnxruntime", providers="cpu") as reference:
        side = reference.bundle.resize_short
        squares = np.stack([resize_and_crop(image, side, side)[0][:, :, ::-1] for _, image in images])
        predictions = reference.predict_batch(list(squares))
    np.savez_compressed(
        Path(bundle_dir) / CHECK_FILE,
        squares=squares,
        class_ids=np.array([p.class_id for p in predictions]),
        probs=np.stack([p.branch_probs for p in predictions]).astype(np.float32),
        scores=np.stack([p.class_distribution() for p in predictions]).astype(np.float32),
    )
    return CheckSet(file=CHECK_FILE, sha256=sha256_of(Path(bundle_dir) / CHECK_FILE), images=len(images), source=source)


def verify_bundle(
    bundle_dir: str | Path,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    record: bool = True,
    **pipeline_options: Any,
) -> VerifyResult:
    """Run the bundle's check set through `Pipeline.from_bundle(bundle_dir, **pipeline_options)` and compare.

    Returns the result (also written into bundle.json when `record`); its
    `passed` is top-1 agreement >= min_agreement.

    Raises:
        InputError: `min_agreement` is not a share in [0, 1].
        BundleError: the bundle has no check set (re-export it) or the check file does not match its sha256.
    """
    from anchor_edge.pipeline import Pipeline

    if not 0.0 <= min_agreement <= 1.0:  # also refuses NaN, which bundle.json could not hold as JSON
        raise InputError(f"min_agreement is a share of the check images in [0, 1], got {min_agreement!r}")
    bundle = load_bundle(bundle_dir)
    check = bundle.manifest.check_set
    if check is None:
        raise BundleError(f"{bundle.root} has no check set; re-export it with this anchor-edge to verify it")
    path = bundle.root / check.file
    if path.is_symlink() or not path.is_file() or sha256_of(path) != check.sha256:
        raise BundleError(
            f"{path} is missing or does not match its sha256 in {bundle.manifest_path}; re-export the bundle"
        )
    stored = np.load(path)
    with Pipeline.from_bundle(bundle.root, **pipeline_options) as pipe:
        predictions = pipe.predict_batch(list(stored["squares"]))
        backend = pipe.anchornet.describe()
    class_ids = np.array([p.class_id for p in predictions])
    probs = np.stack([p.branch_probs for p in predictions])
    scores = np.stack([p.class_distribution() for p in predictions])
    agreement = float(np.mean(class_ids == stored["class_ids"]))
    result = VerifyResult(
        backend=backend,
        images=len(predictions),
        top1_agreement=round(agreement, 4),
        max_abs_diff={
            "anchornet_probs": float(np.abs(probs - stored["probs"]).max()),
            "class_distribution": float(np.abs(scores - stored["scores"]).max()),
        },
        min_agreement=min_agreement,
        passed=agreement >= min_agreement,
    )
    if record:
        record_result(bundle.root, result)
    return result


def record_result(bundle_dir: Path, result: VerifyResult) -> None:
    """Put `result` into bundle.json's `verified`, replacing an earlier one for the same backend; atomically."""
    manifest = read_manifest(bundle_dir)
    kept = tuple(r for r in manifest.verified or () if r.backend != result.backend)
    text = manifest_text(dataclasses.replace(manifest, verified=(*kept, result)))
    write_atomically(Path(bundle_dir) / MANIFEST_NAME, text.encode("utf-8"))
