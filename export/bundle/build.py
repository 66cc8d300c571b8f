"""Export AnchorNet and a downstream network into one verified, self-describing bundle: `export_bundle`.

The steps, in order: build both models (checkpoints loaded with
`weights_only=True`; the downstream from any source export/models/downstream.py
reads, or an in-memory module), settle the downstream's preprocessing and
class names (`preprocessing`), export each to ONNX (`onnx_export`, or the
edited graph of an ONNX file), verify each on ONNX Runtime against its
source on real photos (`verify`, `downstream_file`), and write bundle.json
beside them (`staging`), with the check set `anchor-edge verify` reruns on
the device (`anchor_edge.bundle.check_set`). The whole bundle is staged and
swapped in at the end, so a failure at any step leaves the previous bundle
untouched. `python export/to_trt.py` is a thin layer over `export_bundle`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
import onnxruntime
import torch
import torchvision
from tqdm import tqdm

from anchor_edge.bundle.check_set import CHECK_IMAGES, write_check_set
from anchor_edge.bundle.choices import Pooling, Precision, Preset
from anchor_edge.bundle.precision_records import Verification
from anchor_edge.bundle.schema import (
    INPUT_NAME,
    LOGITS_OUTPUT,
    PROBS_OUTPUT,
    Branch,
    Decision,
    Lsp,
    Manifest,
    ModelEntry,
    Models,
    Preprocess,
    Provenance,
    Tensor,
    anchornet_output_names,
)
from anchor_edge.errors import InputError
from anchor_edge.method.anchor_vote import check_anchor_vote
from anchor_edge.method.decision import check_branch_rule
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.patches import check_heatmap
from export.bundle.downstream_file import DownstreamFile, write_downstream
from export.bundle.staging import staged_bundle, write_manifest
from export.graph.onnx_export import OPSET, export_anchornet
from export.graph.verify import photo_crops, verify
from export.models.anchornet import BRANCH_RECEPTIVE_FIELDS, AnchorNet, branch_specs
from export.models.downstream import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    UNTRAINED_WEIGHTS,
    Downstream,
    downstream_from_module,
    load_downstream,
)
from export.models.flops import count_multiply_adds
from export.models.loading import LoadedAnchorNet, load_anchornet
from export.models.preprocessing import PreprocessingFlags, apply_preprocessing
from export.precision.calibration import check_images
from export.precision.convert import PrecisionOptions, convert_bundle

log = logging.getLogger("anchor_edge")

RESIZE_SHORT, CROP = 256, 224
PATCH_SIZES = BRANCH_RECEPTIVE_FIELDS
ANCHORNET_FILE, DOWNSTREAM_FILE = "anchornet.onnx", "downstream.onnx"
IN_MEMORY = "in-memory"


def export_bundle(
    anchornet: AnchorNet | str | Path | None,
    downstream: torch.nn.Module | str | Path,
    out: str | Path,
    *,
    num_classes: int | None = None,
    pooling: str | None = None,
    preset: str = "accurate",
    vote_min: int = 2,
    branch_rule: str | None = None,
    heatmap: str | None = None,
    anchor_vote: float | Callable[[Path], float] = 0.0,
    tolerance: float = 1e-3,
    precision: PrecisionOptions | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pixel_range: str | None = None,
    class_names: Sequence[str] | str | Path | None = None,
    channel_order: str | None = None,
    allow_pickle: bool = False,
    check_dir: str | Path | None = None,
) -> Path:
    """Export, verify and write a bundle of AnchorNet and a downstream classifier; return its directory.

    The command line (`python export/to_trt.py`, export/cli.py) calls this
    with its flags, so both take the same checks, staging and errors.

    Args:
        anchornet: an AnchorNet module (in eval mode or not; counted as
            trained), a checkpoint path, or None for a fresh, seeded one.
        downstream: an nn.Module mapping (N, 3, H, W) to (N, C) logits at 63
            to 224 px (a timm model brings its pretrained_cfg), or a spec
            string or path as `--downstream` takes (export/models/downstream.py).
        out: the bundle directory; an existing bundle there is replaced only
            once the new one is complete.
        num_classes: classes; None: AnchorNet's (checkpoint or module), else 1000.
        pooling: AnchorNet's inference pooling, "gap" or "attention".
        preset, vote_min, branch_rule: the LSP preset, branch votes and branch rule recorded in the
            bundle; branch_rule None takes the AnchorNet checkpoint's ("widest" when it was trained
            without boxes, `BranchRule`), else "confident".
        heatmap: the map LSP reads, recorded in the bundle; None takes the AnchorNet checkpoint's ("max" when it
            was trained without boxes, `Heatmap`), else "class".
        anchor_vote: the weight of AnchorNet's class in the image's (anchor_edge/method/anchor_vote.py; 0: the
            paper's rule), or a function that chooses it from the staged FP32 bundle's directory, before its check
            set and precision conversion are made with it (the folder training's choice on held-back images).
        tolerance: the largest ONNX-vs-source difference allowed.
        precision: FP16 / INT8 conversion (export/precision/convert.py); None: FP32.
        mean, std: the downstream's normalisation, three values each in its
            channel order, on the `pixel_range` scale ("0-1" or "0-255").
        class_names: names (a list) or a file of them (one per line, or JSON).
        channel_order: "RGB" or "BGR", the order the downstream was trained on.
        allow_pickle: load a downstream file that is a whole pickled module.
        check_dir: the user's labelled folder (class subfolders, or train/ and
            val/) whose held-out images make the check set `verify` reruns on
            the device; None: the digits test split for a digits bundle, else
            the bundled photos.

    Returns:
        `out` as a Path.

    Raises:
        InputError: an argument, file or spec that cannot be used, or a flag
            that contradicts what its source records.
        ExportError: a step failed on valid input (VerificationError: ONNX
            differs from the source beyond `tolerance`).

    Example:
        >>> import timm
        >>> from export import export_bundle
        >>> net = timm.create_model("resnet18", pretrained=False, num_classes=10)
        >>> export_bundle("weights/anchornet.pt", net, "bundles/mine")  # class names from the AnchorNet checkpoint
        PosixPath('bundles/mine')
    """
    if preset not in PRESETS:
        raise InputError(f"unknown LSP preset {preset!r}; choose one of {sorted(PRESETS)}")
    if isinstance(vote_min, bool) or vote_min not in (1, 2, 3):
        raise InputError(f"vote_min must be 1, 2 or 3, got {vote_min!r}")
    if branch_rule is not None:
        check_branch_rule(branch_rule)
    if not callable(anchor_vote):
        anchor_vote = check_anchor_vote(anchor_vote)
    if not tolerance > 0:
        raise InputError(f"tolerance must be positive, got {tolerance!r}")
    precision = precision or PrecisionOptions()
    out = Path(out)
    steps = tqdm(total=5, desc="export", unit="step", disable=None)
    anchor = _anchornet(anchornet, num_classes, pooling)
    classes = anchor.module.num_classes
    net = _downstream(downstream, classes, allow_pickle)
    if net.num_classes != classes:
        raise InputError(
            f"AnchorNet has {classes} classes but downstream {net.name} has {net.num_classes}; "
            "they must classify the same classes"
        )
    net = apply_preprocessing(net, PreprocessingFlags(mean, std, pixel_range, class_names, channel_order))
    names = _class_names(net, anchor, given=class_names is not None)
    steps.update()
    trained = anchor.trained and net.pretrained not in UNTRAINED_WEIGHTS
    if not trained:
        log.warning(
            "UNTRAINED WEIGHTS: %s; the bundle runs but its patches and classes mean nothing",
            "AnchorNet is freshly initialised" if not anchor.trained else f"downstream {net.name} is {net.pretrained}",
        )
    branches = branch_specs(CROP, anchor.module.pooling)
    decision = Decision(
        vote_min,
        check_branch_rule(branch_rule or anchor.branch_rule),
        check_heatmap(heatmap or anchor.heatmap),
        0.0 if callable(anchor_vote) else anchor_vote,
    )
    crops = photo_crops(CROP)
    with staged_bundle(out) as staging:
        steps.set_postfix_str("ONNX")
        export_anchornet(anchor.module, staging / ANCHORNET_FILE, anchornet_output_names(branches), size=CROP)
        steps.update()
        steps.set_postfix_str("verify AnchorNet")
        anchor_report = verify(
            anchor.module,
            staging / ANCHORNET_FILE,
            crops,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            sizes=[CROP],
            top1_output=PROBS_OUTPUT,
            tolerance=tolerance,
        )
        steps.update()
        steps.set_postfix_str("downstream")
        written = write_downstream(
            net, staging / DOWNSTREAM_FILE, crops, sizes=(*PATCH_SIZES, CROP), tolerance=tolerance
        )
        steps.update()
        manifest = write_manifest(
            staging,
            _manifest(
                preset,
                decision,
                anchor,
                net,
                written,
                branches,
                names,
                trained,
                anchor_report,
            ),
        )
        if callable(anchor_vote):
            steps.set_postfix_str("anchor vote")
            chosen = dataclasses.replace(decision, anchor_vote=check_anchor_vote(anchor_vote(staging)))
            manifest = write_manifest(staging, dataclasses.replace(manifest, decision=chosen))
        checked = check_images(None if check_dir is None else Path(check_dir), manifest.class_names, CHECK_IMAGES)
        check_set = write_check_set(staging, checked.images, checked.source)
        write_manifest(staging, dataclasses.replace(manifest, check_set=check_set))
        steps.update()
        if precision.converts:  # the verified FP32 bundle is the reference (export/precision/convert.py)
            steps.set_postfix_str("precision")
            convert_bundle(staging, precision)
    steps.close()
    log.info("wrote bundle %s", out)
    return out


def _anchornet(
    anchornet: AnchorNet | str | Path | None, num_classes: int | None, pooling: str | None
) -> LoadedAnchorNet:
    if not isinstance(anchornet, AnchorNet):
        return load_anchornet(None if anchornet is None else Path(anchornet), num_classes, pooling)
    if num_classes is not None and num_classes != anchornet.num_classes:
        raise InputError(
            f"num_classes {num_classes} disagrees with the AnchorNet given, which has {anchornet.num_classes}"
        )
    if pooling is not None and pooling != anchornet.pooling:
        raise InputError(f"pooling {pooling!r} disagrees with the AnchorNet given, built with {anchornet.pooling!r}")
    return LoadedAnchorNet(anchornet.eval(), IN_MEMORY, True, None)


def _downstream(downstream: torch.nn.Module | str | Path, num_classes: int, allow_pickle: bool) -> Downstream:
    if isinstance(downstream, torch.nn.Module):
        if allow_pickle:
            raise InputError("allow_pickle applies only to a pickled module file, not to an in-memory module; drop it")
        return downstream_from_module(
            downstream, name=type(downstream).__name__, pretrained=IN_MEMORY, num_classes=num_classes
        )
    if not isinstance(downstream, (str, Path)):
        raise InputError(f"downstream must be an nn.Module, a spec string or a path, got {type(downstream).__name__}")
    return load_downstream(str(downstream), num_classes=num_classes, allow_pickle=allow_pickle)


def _class_names(downstream: Downstream, anchor: LoadedAnchorNet, *, given: bool) -> list[str]:
    """The downstream's names (given or recorded), else AnchorNet's checkpoint's, else class_0..N-1.

    Raises:
        InputError: AnchorNet's checkpoint records other names, or the same in another order: its decision and
            the downstream's scores would mean different classes.
    """
    if anchor.class_names is not None and downstream.class_names is not None:
        if list(anchor.class_names) != list(downstream.class_names):
            raise InputError(
                f"the class names {'given' if given else f'downstream {downstream.name} records'} disagree with "
                f"those AnchorNet's checkpoint ({anchor.source}) records: {list(downstream.class_names)[:5]}... "
                f"against {list(anchor.class_names)[:5]}...; "
                + ("drop the flag" if given else "export two networks trained on the same classes, in one order")
            )
    return downstream.class_names or anchor.class_names or [f"class_{i}" for i in range(downstream.num_classes)]


def _manifest(
    preset: str,
    decision: Decision,
    anchor: LoadedAnchorNet,
    downstream: Downstream,
    written: DownstreamFile,
    branches: tuple[Branch, ...],
    class_names: list[str],
    trained: bool,
    anchor_report: Verification,
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
        decision=decision,
        lsp=Lsp(preset=Preset(preset), presets={name: dict(params) for name, params in PRESETS.items()}),
        models=Models(
            anchornet=ModelEntry(
                file=ANCHORNET_FILE,
                sha256="",
                precision=Precision.FP32,
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                inputs=(Tensor(INPUT_NAME, ("batch", 3, CROP, CROP)),),
                outputs=anchor_outputs,
                weights=anchor.source,
                parameters=sum(p.numel() for p in anchor.module.parameters()),
                multiply_adds=count_multiply_adds(anchor.module, CROP),
                verification=anchor_report,
                pooling=Pooling(anchor.module.pooling),
            ),
            downstream=ModelEntry(
                file=DOWNSTREAM_FILE,
                sha256="",
                precision=Precision.FP32,
                mean=written.mean,
                std=written.std,
                inputs=(Tensor(INPUT_NAME, ("batch", 3, "height", "width")),),
                outputs=(Tensor(LOGITS_OUTPUT, ("batch", num_classes)),),
                weights=downstream.pretrained,
                parameters=written.parameters,
                multiply_adds=written.multiply_adds,
                verification=written.verification,
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
