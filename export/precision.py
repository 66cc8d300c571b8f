"""Decide each model's precision in the ONNX graph, then prove the bundle still answers like FP32.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder
flags), so precision is decided once, here, in the ONNX models: FP16 by
conversion (`export.fp16`), INT8 by calibrated QDQ nodes (`export.int8`).
The converted models also run on ONNX Runtime, so their accuracy is measured
on this machine before anything is kept.

Order (issue 4): the FP32 bundle is exported and verified first; it is the
reference. The converted models are written beside a copy of its manifest,
both Pipelines run on held-out real images (`export.precision_check`), and
only if the agreement holds do the converted files replace the FP32 ones in
the bundle directory, with bundle.json's sha256s recomputed from the final
files. `export_bundle` calls this on its staging directory, so a failed check
leaves the previous bundle as it was.

Precision can differ per model because speed does. Measured on ONNX Runtime
1.32, 2 shared Xeon cores with AVX-512 VNNI (benchmarks/latency.py, bundles
interleaved): INT8 ran the downstream EfficientNet-Lite0 2.1-2.6x and
ResNet-50 about 4x faster than FP32, but AnchorNet not at all (0.92-1.17x the
FP32 time: its quantize/dequantize steps and float squeeze-excite ops eat the
gain; a prototype on AMD Zen 3 found the same), and FP16 ran 1.5-2.3x slower
than FP32 (it is for GPUs). So on a CPU: `--precision
anchornet=fp32,downstream=int8`. The README has the numbers.

bundle.json records, per model, "precision" and how it was made
("int8": {"format", "target", "activations", "weights", "calibration"...},
"fp16": {"method", ...}), and a top-level "precision" block holding the check.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anchor_edge.bundle import MODEL_ROLES
from anchor_edge.pipeline import Pipeline
from export.bundle_writer import write_manifest
from export.calibration import (
    BatchReader,
    ImageSet,
    anchornet_inputs,
    calibration_images,
    default_split,
    localized_patches,
    patch_batches,
)
from export.fp16 import convert_to_fp16
from export.int8 import INT8_TARGETS, quantize_to_int8
from export.precision_check import compare_pipelines, describe, require_agreement

log = logging.getLogger("anchor_edge")

PRECISIONS = ("fp32", "fp16", "int8")


class ConversionError(RuntimeError):
    """A model could not be converted (the converter or quantizer failed on its graph)."""


def parse_precision(text: str) -> dict[str, str]:
    """`--precision` value -> {role: precision}.

    "int8" sets both models; "anchornet=fp32,downstream=int8" sets each (an
    unnamed model stays fp32).

    Example:
        >>> parse_precision("downstream=int8")
        {'anchornet': 'fp32', 'downstream': 'int8'}
    """
    if text in PRECISIONS:
        return dict.fromkeys(MODEL_ROLES, text)
    chosen = dict.fromkeys(MODEL_ROLES, "fp32")
    for item in text.split(","):
        role, _, precision = item.partition("=")
        if role not in MODEL_ROLES or precision not in PRECISIONS:
            raise ValueError(
                f"--precision {text!r}: expected one of {', '.join(PRECISIONS)}, or ROLE=PRECISION pairs "
                f"separated by commas with ROLE in {', '.join(MODEL_ROLES)} (e.g. anchornet=fp32,downstream=int8)"
            )
        chosen[role] = precision
    return chosen


@dataclass(frozen=True)
class PrecisionOptions:
    """The precision flags of `python export/to_trt.py`."""

    models: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(MODEL_ROLES, "fp32"))
    int8_target: str = "cpu"
    calibration_dir: Path | None = None
    min_agreement: float = 0.95

    def __post_init__(self) -> None:
        if set(self.models) != set(MODEL_ROLES) or not set(self.models.values()) <= set(PRECISIONS):
            raise ValueError(f"precision must map {list(MODEL_ROLES)} to one of {PRECISIONS}, got {dict(self.models)}")
        if self.int8_target not in INT8_TARGETS:
            raise ValueError(f"unknown --int8-target {self.int8_target!r}; choose one of {sorted(INT8_TARGETS)}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"--min-agreement must be between 0 and 1, got {self.min_agreement}")

    @property
    def converts(self) -> bool:
        return any(p != "fp32" for p in self.models.values())


def convert_bundle(bundle_dir: Path, options: PrecisionOptions, *, held_out: ImageSet | None = None) -> dict | None:
    """Convert the FP32 bundle in `bundle_dir` in place, after checking the result against it.

    Args:
        bundle_dir: a complete, verified FP32 bundle (export_bundle's staging directory).
        options: the precision per model, INT8 target and calibration folder, agreement floor.
        held_out: images for the check; None: the default held-out split (export.calibration.default_split).

    Returns:
        The check written into bundle.json's "precision" block; None when everything stays fp32.

    Raises:
        PrecisionCheckError: agreement below `options.min_agreement`; `bundle_dir` is unchanged.
        ConversionError: a model could not be converted; `bundle_dir` is unchanged.
    """
    if not options.converts:
        return None
    bundle_dir = Path(bundle_dir)
    manifest = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))
    if held_out is None:
        held_out = default_split(manifest["class_names"])[1]
    with tempfile.TemporaryDirectory(prefix=".precision-", dir=bundle_dir.parent) as workdir:
        candidate_dir = Path(workdir)
        with Pipeline.from_bundle(bundle_dir, backend="onnxruntime") as reference:
            calibration = _calibration_readers(reference, options) if "int8" in options.models.values() else {}
            for role in MODEL_ROLES:
                entry = manifest["models"][role]
                _convert(role, bundle_dir / entry["file"], candidate_dir / entry["file"], entry, options, calibration)
            write_manifest(candidate_dir, manifest)
            with Pipeline.from_bundle(candidate_dir, backend="onnxruntime") as candidate:
                report = compare_pipelines(reference, candidate, held_out)
        report.update(
            reference="fp32 export of the same weights, ONNX Runtime CPU",
            held_out_source=held_out.source,
            models=dict(options.models),
            min_agreement=options.min_agreement,
        )
        summary = ", ".join(f"{role} {precision}" for role, precision in options.models.items())
        log.info("precision check (%s): Pipeline top-1 %s", summary, describe(report))
        require_agreement(report, options.min_agreement, summary, trained=bool(manifest.get("trained", True)))
        for role in MODEL_ROLES:
            name = manifest["models"][role]["file"]
            os.replace(candidate_dir / name, bundle_dir / name)
    manifest["precision"] = report
    write_manifest(bundle_dir, manifest)
    return report


def _calibration_readers(reference: Pipeline, options: PrecisionOptions) -> dict:
    """Calibration readers per role, fed by the FP32 Pipeline on real images."""
    chosen = calibration_images(options.calibration_dir, reference.bundle.class_names)
    record = {"images": len(chosen.images), "source": chosen.source}
    readers = {}
    if options.models["anchornet"] == "int8":
        readers["anchornet"] = (BatchReader(anchornet_inputs(reference, chosen.images)), record)
    if options.models["downstream"] == "int8":
        patches = localized_patches(reference, chosen.images)
        counts = {str(size): len(group) for size, group in patches.items()}
        log.info("INT8 calibration of the downstream network: patches per size %s", counts)
        readers["downstream"] = (BatchReader(patch_batches(patches)), {**record, "inputs_per_size": counts})
    return readers


def _convert(role: str, source: Path, target: Path, entry: dict, options: PrecisionOptions, calibration: dict) -> None:
    """Write `role`'s model at its chosen precision to `target` and describe it in `entry`."""
    precision = options.models[role]
    entry["precision"] = precision
    if precision == "fp32":
        shutil.copyfile(source, target)
        return
    try:
        if precision == "fp16":
            entry["fp16"] = convert_to_fp16(source, target)
        else:
            reader, record = calibration[role]
            quantized = quantize_to_int8(source, target, reader, int8_target=options.int8_target)
            entry["int8"] = {**quantized, "calibration": record}
    except Exception as exc:  # onnxconverter-common and ONNX Runtime's quantizer raise untyped errors
        raise ConversionError(
            f"could not convert {role} ({source.name}) to {precision}: {type(exc).__name__}: {exc}; "
            f"keep it in fp32 (--precision {role}=fp32,...) and report the model"
        ) from exc
