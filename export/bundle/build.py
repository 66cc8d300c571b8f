"""Export AnchorNet and a downstream network into one verified, self-describing bundle.

The steps, in order: build both PyTorch models (checkpoints loaded with
`weights_only=True`), export each to ONNX (`onnx_export`), verify each on
ONNX Runtime against PyTorch on real photos (`verify`), and write bundle.json
beside them (`staging`), with the check set `anchor-edge verify` reruns on the
device (`anchor_edge.verify`). The whole bundle is staged and swapped in at
the end, so a failure at any step leaves the previous bundle untouched.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime
import torch
import torchvision
from tqdm import tqdm

from anchor_edge.errors import InputError
from anchor_edge.lsp import PRESETS
from anchor_edge.schema import (
    INPUT_NAME,
    LOGITS_OUTPUT,
    PROBS_OUTPUT,
    Branch,
    Decision,
    Lsp,
    Manifest,
    ModelEntry,
    Models,
    Pooling,
    Precision,
    Preprocess,
    Preset,
    Provenance,
    Role,
    Tensor,
    Verification,
    anchornet_output_names,
)
from anchor_edge.verify import CHECK_IMAGES, write_check_set
from export.bundle.staging import staged_bundle, write_manifest
from export.graph.onnx_export import OPSET, export_anchornet, export_downstream
from export.graph.verify import photo_crops, verify
from export.models.anchornet import BRANCH_RECEPTIVE_FIELDS, branch_specs
from export.models.downstream import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Downstream,
    load_downstream,
)
from export.models.flops import count_multiply_adds
from export.models.loading import LoadedAnchorNet, load_anchornet
from export.precision.calibration import default_split
from export.precision.convert import PrecisionOptions, convert_bundle

log = logging.getLogger("anchor_edge")

RESIZE_SHORT, CROP = 256, 224
PATCH_SIZES = BRANCH_RECEPTIVE_FIELDS
ANCHORNET_FILE, DOWNSTREAM_FILE = "anchornet.onnx", "downstream.onnx"


@dataclass(frozen=True)
class ExportOptions:
    """What `python export/to_trt.py` was asked to export (its flags, one field each)."""

    out: Path
    anchornet: Path | None = None
    downstream: str = "efficientnet_lite0"
    num_classes: int | None = None
    pooling: str | None = None
    preset: str = "accurate"
    vote_min: int = 2
    tolerance: float = 1e-3
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)


def export_bundle(options: ExportOptions) -> Path:
    """Export, verify and write the bundle described by `options`; return its directory."""
    if options.preset not in PRESETS:
        raise InputError(f"unknown LSP preset {options.preset!r}; choose one of {sorted(PRESETS)}")
    steps = tqdm(total=5, desc="export", unit="step", disable=None)
    anchor = load_anchornet(options.anchornet, options.num_classes, options.pooling)
    num_classes = anchor.module.num_classes
    downstream = load_downstream(options.downstream, num_classes=num_classes)
    if downstream.num_classes != num_classes:
        raise InputError(
            f"AnchorNet has {num_classes} classes but downstream {downstream.name} has {downstream.num_classes}; "
            "they must classify the same classes"
        )
    steps.update()
    trained = anchor.trained and downstream.pretrained != "random"
    if not trained:
        log.warning(
            "UNTRAINED WEIGHTS: %s; the bundle runs but its patches and classes mean nothing",
            "AnchorNet is freshly initialised" if not anchor.trained else f"downstream {downstream.name} is random",
        )
    branches = branch_specs(CROP, anchor.module.pooling)
    output_names = anchornet_output_names(branches)
    crops = photo_crops(CROP)
    with staged_bundle(options.out) as staging:
        steps.set_postfix_str("ONNX")
        export_anchornet(anchor.module, staging / ANCHORNET_FILE, output_names, size=CROP)
        export_downstream(downstream.module, staging / DOWNSTREAM_FILE, size=CROP)
        steps.update()
        steps.set_postfix_str("verify AnchorNet")
        anchor_report = verify(
            anchor.module, staging / ANCHORNET_FILE, crops, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            sizes=[CROP], top1_output=PROBS_OUTPUT, tolerance=options.tolerance,
        )
        steps.update()
        steps.set_postfix_str("verify downstream")
        downstream_report = verify(
            downstream.module, staging / DOWNSTREAM_FILE, crops, mean=downstream.mean, std=downstream.std,
            sizes=[*PATCH_SIZES, CROP], top1_output=LOGITS_OUTPUT, tolerance=options.tolerance,
        )
        steps.update()
        class_names = downstream.class_names or anchor.class_names or [f"class_{i}" for i in range(num_classes)]
        reports = {Role.ANCHORNET: anchor_report, Role.DOWNSTREAM: downstream_report}
        written = write_manifest(staging, _manifest(options, anchor, downstream, branches, class_names, trained, reports))
        held_out = default_split(written.class_names)[1]
        check_set = write_check_set(staging, held_out.images[:CHECK_IMAGES], f"the first {CHECK_IMAGES} of {held_out.source}")
        write_manifest(staging, dataclasses.replace(written, check_set=check_set))
        steps.update()
        if options.precision.converts:  # the verified FP32 bundle is the reference (export/precision/convert.py)
            steps.set_postfix_str("precision")
            convert_bundle(staging, options.precision)
    steps.close()
    log.info("wrote bundle %s", options.out)
    return Path(options.out)


def _manifest(
    options: ExportOptions,
    anchor: LoadedAnchorNet,
    downstream: Downstream,
    branches: tuple[Branch, ...],
    class_names: list[str],
    trained: bool,
    verification: dict[Role, Verification],
) -> Manifest:
    """bundle.json of the FP32 bundle; sha256s are filled in by `write_manifest` from the files."""
    num_classes = anchor.module.num_classes
    map_shapes = {b.map_output: ("batch", num_classes, b.map_size, b.map_size) for b in branches}
    map_shapes |= {b.attention_output: ("batch", 1, b.map_size, b.map_size) for b in branches if b.attention_output}
    anchor_outputs = (Tensor(PROBS_OUTPUT, ("batch", 3, num_classes)),) + tuple(
        Tensor(name, map_shapes[name]) for name in anchornet_output_names(branches)[1:]
    )
    sizes = (*PATCH_SIZES, CROP)
    return Manifest(
        trained=trained,
        num_classes=num_classes,
        class_names=tuple(class_names),
        preprocess=Preprocess(resize_short=RESIZE_SHORT, crop=CROP),
        branches=branches,
        decision=Decision(vote_min=options.vote_min),
        lsp=Lsp(preset=Preset(options.preset), presets={name: dict(params) for name, params in PRESETS.items()}),
        models=Models(
            anchornet=ModelEntry(
                file=ANCHORNET_FILE, sha256="", precision=Precision.FP32,
                mean=IMAGENET_MEAN, std=IMAGENET_STD,
                inputs=(Tensor(INPUT_NAME, ("batch", 3, CROP, CROP)),), outputs=anchor_outputs,
                weights=anchor.source,
                parameters=sum(p.numel() for p in anchor.module.parameters()),
                multiply_adds=count_multiply_adds(anchor.module, CROP),
                verification=verification[Role.ANCHORNET],
                pooling=Pooling(anchor.module.pooling),
            ),
            downstream=ModelEntry(
                file=DOWNSTREAM_FILE, sha256="", precision=Precision.FP32,
                mean=downstream.mean, std=downstream.std,
                inputs=(Tensor(INPUT_NAME, ("batch", 3, "height", "width")),),
                outputs=(Tensor(LOGITS_OUTPUT, ("batch", num_classes)),),
                weights=downstream.pretrained,
                parameters=sum(p.numel() for p in downstream.module.parameters()),
                multiply_adds={size: count_multiply_adds(downstream.module, size) for size in sizes},
                verification=verification[Role.DOWNSTREAM],
                name=downstream.name,
                patch_sizes=sizes,
            ),
        ),
        export=Provenance(
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            python=platform.python_version(),
            torch=torch.__version__,
            torchvision=torchvision.__version__,
            onnx=onnx.__version__,
            onnxruntime=onnxruntime.__version__,
            opset=OPSET,
        ),
    )
