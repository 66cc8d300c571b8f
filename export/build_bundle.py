"""Export AnchorNet and a downstream network into one verified, self-describing bundle.

The steps, in order: build both PyTorch models (checkpoints loaded with
`weights_only=True`), export each to ONNX (`onnx_export`), verify each on
ONNX Runtime against PyTorch on real photos (`verify`), and write bundle.json
beside them (`bundle_writer`). The whole bundle is staged and swapped in at
the end, so a failure at any step leaves the previous bundle untouched.
"""
from __future__ import annotations

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

from anchor_edge.bundle import SCHEMA_VERSION
from anchor_edge.lsp import PRESETS
from export.anchornet import BRANCH_RECEPTIVE_FIELDS, BRANCH_STRIDE, AnchorNet, OUTPUT_NAMES_ATTENTION, OUTPUT_NAMES_GAP
from export.bundle_writer import staged_bundle, write_manifest
from export.checkpoint import load_weights, read_checkpoint
from export.downstream import IMAGENET_MEAN, IMAGENET_STD, Downstream, load_downstream
from export.flops import count_multiply_adds
from export.onnx_export import INPUT_NAME, OPSET, export_anchornet, export_downstream
from export.precision import PrecisionOptions, convert_bundle
from export.verify import photo_crops, verify

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


@dataclass(frozen=True)
class LoadedAnchorNet:
    module: AnchorNet
    source: str
    trained: bool
    class_names: list[str] | None


def load_anchornet(checkpoint: Path | None, num_classes: int | None, pooling: str | None) -> LoadedAnchorNet:
    """AnchorNet from a checkpoint, or freshly initialised (seeded) when there is none.

    A checkpoint is a state_dict, or a dict with "state_dict" plus optional
    "num_classes", "pooling", "class_names" and "trained" (what the training
    recipe writes). Flags given on the command line must agree with it.
    """
    if checkpoint is None:
        torch.manual_seed(0)
        model = AnchorNet(num_classes=num_classes or 1000, pooling=pooling or "gap")
        return LoadedAnchorNet(model.eval(), "random", False, None)
    state_dict, extras = read_checkpoint(str(checkpoint))
    saved_classes = extras.get("num_classes", state_dict_classes(state_dict))
    if num_classes is not None and num_classes != saved_classes:
        raise ValueError(f"--num-classes {num_classes} disagrees with {checkpoint}, which has {saved_classes} classes")
    model = AnchorNet(num_classes=saved_classes, pooling=pooling or extras.get("pooling", "gap"))
    load_weights(model, state_dict, str(checkpoint))
    names = extras.get("class_names")
    return LoadedAnchorNet(model.eval(), f"checkpoint:{checkpoint}", bool(extras.get("trained", True)), names)


def state_dict_classes(state_dict: dict) -> int:
    """Number of classes of an AnchorNet state_dict, read from the first branch's logit conv."""
    return int(state_dict["branches.0.classifier.weight"].shape[0])


def export_bundle(options: ExportOptions) -> Path:
    """Export, verify and write the bundle described by `options`; return its directory."""
    if options.preset not in PRESETS:
        raise ValueError(f"unknown LSP preset {options.preset!r}; choose one of {sorted(PRESETS)}")
    steps = tqdm(total=5, desc="export", unit="step", disable=None)
    anchor = load_anchornet(options.anchornet, options.num_classes, options.pooling)
    num_classes = anchor.module.num_classes
    downstream = load_downstream(options.downstream, num_classes=num_classes)
    if downstream.num_classes != num_classes:
        raise ValueError(
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
    output_names = OUTPUT_NAMES_ATTENTION if anchor.module.pooling == "attention" else OUTPUT_NAMES_GAP
    crops = photo_crops(CROP)
    with staged_bundle(options.out) as staging:
        steps.set_postfix_str("ONNX")
        export_anchornet(anchor.module, staging / ANCHORNET_FILE, output_names, size=CROP)
        export_downstream(downstream.module, staging / DOWNSTREAM_FILE, size=CROP)
        steps.update()
        steps.set_postfix_str("verify AnchorNet")
        anchor_report = verify(
            anchor.module, staging / ANCHORNET_FILE, crops, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            sizes=[CROP], top1_output="probs", tolerance=options.tolerance,
        )
        steps.update()
        steps.set_postfix_str("verify downstream")
        downstream_report = verify(
            downstream.module, staging / DOWNSTREAM_FILE, crops, mean=downstream.mean, std=downstream.std,
            sizes=[*PATCH_SIZES, CROP], top1_output="logits", tolerance=options.tolerance,
        )
        steps.update()
        class_names = downstream.class_names or anchor.class_names or [f"class_{i}" for i in range(num_classes)]
        manifest = _manifest(options, anchor, downstream, output_names, class_names, trained)
        manifest["models"]["anchornet"]["verification"] = anchor_report
        manifest["models"]["downstream"]["verification"] = downstream_report
        write_manifest(staging, manifest)
        steps.update()
        if options.precision.converts:  # the verified FP32 bundle is the reference (export/precision.py)
            steps.set_postfix_str("precision")
            convert_bundle(staging, options.precision)
    steps.close()
    log.info("wrote bundle %s", options.out)
    return Path(options.out)


def _manifest(
    options: ExportOptions,
    anchor: LoadedAnchorNet,
    downstream: Downstream,
    output_names: tuple[str, ...],
    class_names: list[str],
    trained: bool,
) -> dict:
    num_classes = anchor.module.num_classes
    attention = anchor.module.pooling == "attention"
    map_sizes = [(CROP - k) // BRANCH_STRIDE + 1 for k in BRANCH_RECEPTIVE_FIELDS]
    anchor_outputs = [_tensor("probs", ["batch", 3, num_classes])] + [
        _tensor(name, ["batch", 1 if name.startswith("att_") else num_classes, size, size])
        for name, size in zip(output_names[1:], map_sizes * 2)
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "trained": trained,
        "num_classes": num_classes,
        "class_names": list(class_names),
        "preprocess": {
            "resize_short": RESIZE_SHORT,
            "crop": CROP,
            "channel_order": "RGB",
            "method": "central square of the short side, resized (INTER_AREA down, INTER_LINEAR up), center crop",
        },
        "branches": [
            {
                "name": f"B{k}",
                "receptive_field": k,
                "stride": BRANCH_STRIDE,
                "map_size": size,
                "map_output": f"map_{k}",
                "attention_output": f"att_{k}" if attention else None,
            }
            for k, size in zip(BRANCH_RECEPTIVE_FIELDS, map_sizes)
        ],
        "decision": {"vote_min": options.vote_min},
        "lsp": {"preset": options.preset, "presets": {n: {k: p._asdict() for k, p in v.items()} for n, v in PRESETS.items()}},
        "models": {
            "anchornet": {
                "file": ANCHORNET_FILE,
                "precision": "fp32",
                "pooling": anchor.module.pooling,
                "weights": anchor.source,
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "inputs": [_tensor(INPUT_NAME, ["batch", 3, CROP, CROP])],
                "outputs": anchor_outputs,
                "parameters": sum(p.numel() for p in anchor.module.parameters()),
                "multiply_adds": count_multiply_adds(anchor.module, CROP),
            },
            "downstream": {
                "file": DOWNSTREAM_FILE,
                "precision": "fp32",
                "name": downstream.name,
                "weights": downstream.pretrained,
                "mean": list(downstream.mean),
                "std": list(downstream.std),
                "inputs": [_tensor(INPUT_NAME, ["batch", 3, "height", "width"])],
                "outputs": [_tensor("logits", ["batch", num_classes])],
                "patch_sizes": [*PATCH_SIZES, CROP],
                "parameters": sum(p.numel() for p in downstream.module.parameters()),
                "multiply_adds": {str(s): count_multiply_adds(downstream.module, s) for s in (*PATCH_SIZES, CROP)},
            },
        },
        "export": {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": OPSET,
        },
        "engines": {},
    }


def _tensor(name: str, shape: list) -> dict:
    return {"name": name, "shape": shape, "dtype": "float32"}
