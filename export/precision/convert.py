"""Decide each model's precision in the ONNX graph, then prove the bundle still answers like FP32.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder
flags), so precision is decided once, here, in the ONNX models: FP16 by
conversion (`export.precision.fp16`), INT8 by calibrated QDQ nodes (`export.precision.int8`).
The converted models also run on ONNX Runtime, so their accuracy is measured
on this machine before anything is kept.

Order: the FP32 bundle is exported and verified first; it is the
reference. The converted models are written beside a copy of its manifest,
both Pipelines run on held-out real images (`export.precision.check`), and
only if the agreement holds do the converted files replace the FP32 ones in
the bundle directory, with bundle.json's sha256s recomputed from the final
files. `export_bundle` calls this on its staging directory, so a failed check
leaves the previous bundle as it was.

Precision can differ per model because speed does: on a CPU, INT8 speeds up
the downstream network but not AnchorNet, and FP16 is for GPUs, hence
`--precision anchornet=fp32,downstream=int8` there
(docs/decisions/002-cpu-fp32-anchornet-int8-downstream.md; figures in
docs/precision.md).

bundle.json records, per model, its precision and how it was made
(`anchor_edge.bundle.precision_records.Int8Record`, `Fp16Record`), and a
top-level `PrecisionCheck` holding the check.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anchor_edge.bundle.choices import Precision, Role
from anchor_edge.bundle.precision_records import Calibration, PrecisionCheck
from anchor_edge.bundle.schema import ModelEntry, Models, read_manifest
from anchor_edge.errors import ExportError, InputError
from anchor_edge.pipeline import Pipeline
from export.bundle.staging import write_manifest
from export.precision.calibration import (
    BatchReader,
    ImageSet,
    anchornet_inputs,
    calibration_images,
    held_out_images,
    localized_patches,
    patch_batches,
)
from export.precision.check import compare_pipelines, describe, require_agreement
from export.precision.flag import MODEL_ROLES, PRECISIONS
from export.precision.fp16 import convert_to_fp16
from export.precision.int8 import INT8_TARGETS, quantize_to_int8

log = logging.getLogger("anchor_edge")


class ConversionError(ExportError):
    """A model could not be converted (the converter or quantizer failed on its graph)."""


@dataclass(frozen=True)
class PrecisionOptions:
    """The precision flags of `python export/to_trt.py`."""

    models: Mapping[Role, Precision] = field(default_factory=lambda: dict.fromkeys(Role, Precision.FP32))
    int8_target: str = "cpu"
    calibration_dir: Path | None = None
    min_agreement: float = 0.95

    def __post_init__(self) -> None:
        if set(self.models) != set(MODEL_ROLES) or not set(self.models.values()) <= set(PRECISIONS):
            raise InputError(f"precision must map {list(MODEL_ROLES)} to one of {PRECISIONS}, got {dict(self.models)}")
        if self.int8_target not in INT8_TARGETS:
            raise InputError(f"unknown --int8-target {self.int8_target!r}; choose one of {sorted(INT8_TARGETS)}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InputError(f"--min-agreement must be between 0 and 1, got {self.min_agreement}")
        object.__setattr__(self, "models", {Role(r): Precision(p) for r, p in self.models.items()})

    @property
    def converts(self) -> bool:
        return any(p is not Precision.FP32 for p in self.models.values())


def convert_bundle(
    bundle_dir: Path, options: PrecisionOptions, *, held_out: ImageSet | None = None
) -> PrecisionCheck | None:
    """Convert the FP32 bundle in `bundle_dir` in place, after checking the result against it.

    Args:
        bundle_dir: a complete, verified FP32 bundle (export_bundle's staging directory).
        options: the precision per model, INT8 target and calibration folder, agreement floor.
        held_out: images for the check; None: the held-out images of `options.calibration_dir` (class
            subfolders or a val/ split, with their labels), else the default held-out split
            (export.precision.calibration.held_out_images), so a bundle for the user's classes is checked on them.

    Returns:
        The check written into bundle.json's "precision" block; None when everything stays fp32.

    Raises:
        PrecisionCheckError: agreement below `options.min_agreement`; `bundle_dir` is unchanged.
        ConversionError: a model could not be converted; `bundle_dir` is unchanged.
    """
    if not options.converts:
        return None
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    if held_out is None:
        held_out = held_out_images(options.calibration_dir, manifest.class_names)
    with tempfile.TemporaryDirectory(prefix=".precision-", dir=bundle_dir.parent) as workdir:
        candidate_dir = Path(workdir)
        with Pipeline.from_bundle(bundle_dir, backend="onnxruntime") as reference:
            calibration = _calibration_readers(reference, options) if Precision.INT8 in options.models.values() else {}
            converted = {
                role.value: _convert(role, bundle_dir, candidate_dir, manifest.models[role], options, calibration)
                for role in Role
            }
            candidate_manifest = write_manifest(
                candidate_dir, dataclasses.replace(manifest, models=Models(**converted))
            )
            with Pipeline.from_bundle(candidate_dir, backend="onnxruntime") as candidate:
                report = compare_pipelines(
                    reference, candidate, held_out, models=options.models, min_agreement=options.min_agreement
                )
        summary = ", ".join(f"{role} {precision}" for role, precision in options.models.items())
        log.info("precision check (%s): Pipeline top-1 %s", summary, describe(report))
        require_agreement(report, summary, trained=manifest.trained)
        for role in Role:
            name = manifest.models[role].file
            os.replace(candidate_dir / name, bundle_dir / name)
    write_manifest(bundle_dir, dataclasses.replace(candidate_manifest, precision=report))
    return report


def _calibration_readers(reference: Pipeline, options: PrecisionOptions) -> dict:
    """Calibration readers per role, fed by the FP32 Pipeline on real images."""
    chosen = calibration_images(options.calibration_dir, reference.bundle.class_names)
    record = Calibration(images=len(chosen.images), source=chosen.source)
    readers = {}
    if options.models[Role.ANCHORNET] == Precision.INT8:
        readers[Role.ANCHORNET] = (BatchReader(anchornet_inputs(reference, chosen.images)), record)
    if options.models[Role.DOWNSTREAM] == Precision.INT8:
        patches = localized_patches(reference, chosen.images)
        counts = {size: len(group) for size, group in patches.items()}
        log.info("INT8 calibration of the downstream network: patches per size %s", counts)
        readers[Role.DOWNSTREAM] = (
            BatchReader(patch_batches(patches)),
            dataclasses.replace(record, inputs_per_size=counts),
        )
    return readers


def _convert(
    role: Role, source_dir: Path, target_dir: Path, entry: ModelEntry, options: PrecisionOptions, calibration: dict
) -> ModelEntry:
    """Write `role`'s model at its chosen precision into `target_dir`; return its entry, saying how it was made."""
    precision = Precision(options.models[role])
    source, target = source_dir / entry.file, target_dir / entry.file
    if precision is Precision.FP32:
        shutil.copyfile(source, target)
        return entry
    try:
        if precision is Precision.FP16:
            return dataclasses.replace(entry, precision=precision, fp16=convert_to_fp16(source, target))
        reader, record = calibration[role]
        quantized = quantize_to_int8(source, target, reader, int8_target=options.int8_target)
        return dataclasses.replace(entry, precision=precision, int8=dataclasses.replace(quantized, calibration=record))
    except Exception as exc:  # onnxconverter-common and ONNX Runtime's quantizer raise untyped errors
        raise ConversionError(
            f"could not convert {role} ({source.name}) to {precision}: {type(exc).__name__}: {exc}; "
            f"keep it in fp32 (--precision {role}=fp32,...) and report the model"
        ) from exc
