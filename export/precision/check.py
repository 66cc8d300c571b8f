"""How far a converted (FP16/INT8) bundle strays from its FP32 reference, on held-out real images.

The check that matters to a user is the whole Pipeline's answer, so the
headline number is the top-1 agreement of the final class between the two
bundles, each run end to end on ONNX Runtime. Two finer numbers say where a
disagreement comes from: AnchorNet's branch probabilities (same inputs), and
the downstream patch probabilities on the *same* patches (the FP32
Pipeline's boxes, so a changed box does not count as a changed probability).
When the held-out images have labels, both bundles' top-1 accuracy says what
a disagreement costs: measured on the default digits bundle, most of INT8's
disagreements (11 of 13 with the INT8 downstream) are images FP32 itself
gets wrong, mostly with a near-uniform sum of patch probabilities, where any
rounding picks another class.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from anchor_edge.bundle.choices import Precision, Role
from anchor_edge.bundle.precision_records import Accuracy, Difference, PrecisionCheck
from anchor_edge.errors import ExportError, InputError
from anchor_edge.pipeline import Pipeline
from export.precision.calibration import ImageSet


class PrecisionCheckError(ExportError):
    """The converted bundle disagrees with FP32 more than the user allows (--min-agreement)."""


def compare_pipelines(
    reference: Pipeline,
    candidate: Pipeline,
    held_out: ImageSet,
    *,
    models: Mapping[str, str] | None = None,
    min_agreement: float = 0.0,
    batch: int = 8,
) -> PrecisionCheck:
    """Run both Pipelines on the held-out images; return the agreement and probability differences.

    Args:
        reference, candidate: the FP32 bundle's Pipeline and the converted one's.
        held_out: the images (with labels when known, which adds both top-1 accuracies).
        models: the candidate's precision per role, as recorded (None: the candidate bundle's own).
        min_agreement: the floor the check is held to, as recorded.
    """
    images = held_out.images
    if not images:
        raise InputError("the precision check needs at least one held-out image")
    same_decision = 0
    anchor_diffs, patch_diffs, reference_classes, candidate_classes = [], [], [], []
    for start in range(0, len(images), batch):
        chunk = [image for _, image in images[start : start + batch]]
        expected = reference.predict_batch(chunk)
        got = candidate.predict_batch(chunk)
        crops, _ = candidate.preprocess(chunk)
        same_patches = candidate.classify_patches(crops, [p.boxes for p in expected])
        for ref, out, patch_probs in zip(expected, got, same_patches):
            reference_classes.append(ref.class_id)
            candidate_classes.append(out.class_id)
            same_decision += (ref.anchor_class, ref.branch) == (out.anchor_class, out.branch)
            anchor_diffs.append(np.abs(ref.branch_probs - out.branch_probs).ravel())
            patch_diffs.append(np.abs(ref.patch_probs - patch_probs).ravel())
    anchor, patches = np.concatenate(anchor_diffs), np.concatenate(patch_diffs)
    reference_ids, candidate_ids = np.asarray(reference_classes), np.asarray(candidate_classes)
    accuracy = None
    if held_out.labels is not None:
        labels = np.asarray(held_out.labels)
        accuracy = Accuracy(float(np.mean(reference_ids == labels)), float(np.mean(candidate_ids == labels)))
    if models is None:
        models = {role.value: candidate.bundle.manifest.models[role].precision for role in Role}
    return PrecisionCheck(
        images=len(images),
        pipeline_top1_agreement=float(np.mean(reference_ids == candidate_ids)),
        anchornet_decision_agreement=same_decision / len(images),
        anchornet_probs=_summary(anchor),
        patch_probs=_summary(patches, patches=int(patches.size // reference.bundle.num_classes)),
        reference="fp32 export of the same weights, ONNX Runtime CPU",
        held_out_source=held_out.source,
        models={role: Precision(precision) for role, precision in models.items()},
        min_agreement=min_agreement,
        top1_accuracy=accuracy,
    )


def describe(report: PrecisionCheck) -> str:
    """The check in words: "agrees with FP32 on 94.6% of 480 held-out images", then both accuracies when labelled."""
    text = f"agrees with FP32 on {report.pipeline_top1_agreement:.1%} of {report.images} held-out images"
    if report.top1_accuracy is not None:
        accuracy = report.top1_accuracy
        text += f" (top-1 accuracy on their labels {accuracy.reference:.1%} in FP32, {accuracy.candidate:.1%} here)"
    return text


def require_agreement(report: PrecisionCheck, what: str, *, trained: bool) -> None:
    """Raise PrecisionCheckError when the Pipeline's top-1 agreement is below `min_agreement`.

    An untrained AnchorNet's class probabilities are all about 1/num_classes,
    so its branch decision follows rounding noise and even FP16 changes it on
    most images (measured: every held-out image on the default bundle): the
    message says so rather than blaming the conversion.
    """
    min_agreement = report.min_agreement
    if report.pipeline_top1_agreement < min_agreement:
        untrained = (
            "This bundle's weights are untrained: AnchorNet's near-uniform probabilities let rounding noise pick "
            "its branch, so any change of precision moves the patches; judge precision with trained weights. "
            if not trained
            else ""
        )
        raise PrecisionCheckError(
            f"the Pipeline with {what} {describe(report)}, below --min-agreement {min_agreement:.0%} "
            f"(AnchorNet probabilities differ by up to {report.anchornet_probs.max_abs_diff:.3g}, "
            f"patch probabilities by up to {report.patch_probs.max_abs_diff:.3g}); the existing bundle is unchanged. "
            f"{untrained}Keep the sensitive model in fp32 (e.g. --precision anchornet=fp32,downstream=int8), calibrate "
            "on more images like the deployment's (--calibration-dir), or lower --min-agreement"
        )


def _summary(diffs: np.ndarray, *, patches: int | None = None) -> Difference:
    if not diffs.size:
        return Difference(0.0, 0.0, patches)
    return Difference(float(diffs.max()), float(diffs.mean()), patches)
