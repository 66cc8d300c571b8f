"""Export AnchorNet and a downstream network to a bundle (ONNX, then TensorRT engines where possible).

    python export/to_trt.py                              # the default bundle, bundles/default
    python export/to_trt.py --downstream resnet50 --out bundles/resnet50
    python export/to_trt.py --anchornet anchornet.pt --downstream resnet50:resnet50.pt --num-classes 10
    python export/to_trt.py --anchornet anchornet.pt --downstream timm:efficientnet_b0:ft.pth --class-names names.txt
    python export/to_trt.py --anchornet anchornet.pt --downstream model.onnx --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 \
--pixel-range 0-1
    python export/to_trt.py --precision int8 --int8-target tensorrt   # INT8 QDQ models for TensorRT
    python export/to_trt.py --precision anchornet=fp32,downstream=int8 --calibration-dir photos/
    python export/to_trt.py --bundle bundles/default [--rebuild]   # on the device: engines only, no torch

Exit codes: 0 success, 1 export failure (one line; --debug for the
traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anchor_edge.backends.trt.environment import tensorrt_available
from anchor_edge.bundle.choices import Int8Target, Pooling, Precision, Preset, Role
from anchor_edge.bundle.schema import read_manifest
from anchor_edge.cli.options import add_decision_options
from anchor_edge.errors import AnchorEdgeError
from export.engines.build import DEFAULT_TIMING_CACHE, build_engines, record_engines
from export.precision.flag import parse_precision

DEFAULT_BUNDLE = Path("bundles/default")
log = logging.getLogger("anchor_edge")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The export flags; `anchor-edge export` reuses this parser."""
    parser = parser or argparse.ArgumentParser(prog="python export/to_trt.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--anchornet",
        type=Path,
        metavar="CKPT",
        help="AnchorNet checkpoint (default: weights/anchornet.pt when neither this nor --downstream is given, "
        "else untrained)",
    )
    parser.add_argument(
        "--downstream",
        metavar="SPEC",
        help="NAME[:CKPT] (torchvision name or efficientnet_lite0), timm:NAME[:CKPT], MODULE:CALLABLE[:CKPT], "
        "FILE.onnx, or a TorchScript FILE.pt (default: the default architecture's weights/<ARCH>/downstream_patches.pt "
        "with the trained AnchorNet, "
        "else efficientnet_lite0)",
    )
    parser.add_argument(
        "--trained",
        metavar="ARCH",
        help="export the trained AnchorNet with weights/ARCH/downstream_patches.pt instead of the default "
        "architecture's (efficientnet_lite0: the light pair); not with --anchornet or --downstream",
    )
    parser.add_argument("--num-classes", type=int, metavar="N", help="classes (default: the checkpoint's, else 1000)")
    parser.add_argument(
        "--pooling",
        choices=[p.value for p in Pooling],
        help="AnchorNet's inference pooling (default: the checkpoint's, else gap)",
    )
    parser.add_argument(
        "--preset",
        choices=[p.value for p in Preset],
        help="LSP preset recorded in the bundle (default: fast for a trained pair from weights/, else accurate)",
    )
    parser.add_argument(
        "--vote-min", type=int, choices=[1, 2, 3], default=2, help="branch votes for a class (docs/method.md §3)"
    )
    add_decision_options(
        parser,
        default="what the AnchorNet checkpoint records, widest and max when it was trained without boxes; else "
        "confident and class",
        vote_default="0, the paper's rule",
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="max abs ONNX-vs-PyTorch difference (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")
    parser.add_argument(
        "--check-dir",
        type=Path,
        metavar="DIR",
        help="your labelled images (class subfolders, or train/ and val/): their held-out ones make the check set "
        "anchor-edge verify reruns on the device (default: digits test images for a digits bundle, else photos)",
    )
    feed = parser.add_argument_group(
        "the downstream's own preprocessing and class names (default: what its source records; a flag that "
        "contradicts the source is an error)"
    )
    feed.add_argument(
        "--mean",
        type=_three_numbers,
        metavar="R,G,B",
        help="the downstream's mean, in its channel order, on the --pixel-range scale",
    )
    feed.add_argument(
        "--std",
        type=_three_numbers,
        metavar="R,G,B",
        help="the downstream's std, in its channel order, on the --pixel-range scale",
    )
    feed.add_argument(
        "--pixel-range",
        choices=["0-1", "0-255"],
        help="the scale --mean and --std are written in: 0-1 (0.485,0.456,0.406) or 0-255 (123.68,...); "
        "required with them",
    )
    feed.add_argument("--class-names", type=Path, metavar="FILE", help="class names: one per line, or a JSON list")
    feed.add_argument(
        "--channel-order", choices=["rgb", "bgr"], help="the channel order the downstream was trained on (default: RGB)"
    )
    feed.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a downstream FILE that is a whole pickled module (runs code from the file)",
    )
    on_device = parser.add_argument_group("engines for an existing bundle (on the device: needs TensorRT, not torch)")
    on_device.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR",
        help="build TensorRT engines from DIR's ONNX files only (no export, no checkpoints, no torch)",
    )
    on_device.add_argument(
        "--rebuild", action="store_true", help="with --bundle: replace engines that do not match this GPU and TensorRT"
    )
    precision = parser.add_argument_group(
        "precision (decided in the ONNX graph, checked against FP32 on held-out images)"
    )
    precision.add_argument(
        "--precision",
        type=_precision_flag,
        default="fp32",
        metavar="P",
        help="fp32, fp16 or int8 for both models, or per model: anchornet=fp32,downstream=int8 (default: fp32)",
    )
    precision.add_argument(
        "--int8-target",
        choices=[t.value for t in Int8Target],
        default="cpu",
        help="cpu: uint8 activations for ONNX Runtime; tensorrt: symmetric int8, zero point 0 (default: %(default)s)",
    )
    precision.add_argument(
        "--calibration-dir",
        type=Path,
        metavar="DIR",
        help="INT8 calibration images (default: the digits train split for a digits bundle, else photos shipped "
        "with scikit-image and scikit-learn)",
    )
    precision.add_argument(
        "--min-agreement",
        type=float,
        default=0.95,
        help="least Pipeline top-1 agreement with FP32 on held-out images (default: %(default)s)",
    )
    engines = parser.add_argument_group("TensorRT engines (built when tensorrt and a CUDA GPU are present)")
    engines.add_argument("--max-batch", type=int, default=8, help="most images per engine call (default: %(default)s)")
    engines.add_argument(
        "--max-patches", type=int, default=32, help="most patches of one size per call (default: %(default)s)"
    )
    engines.add_argument(
        "--workspace-gib", type=float, default=2.0, help="TensorRT workspace limit (default: %(default)s)"
    )
    engines.add_argument(
        "--timing-cache", type=Path, default=DEFAULT_TIMING_CACHE, help="reused across builds (default: %(default)s)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


#: The flags that shape the TensorRT engines: unused where no engine is built.
ENGINE_SHAPE_FLAGS = ("max_batch", "max_patches", "workspace_gib", "timing_cache")
#: The flags that apply to --bundle DIR (engines from an existing bundle); every other one is the export's.
ENGINE_FLAGS = ("bundle", "rebuild", *ENGINE_SHAPE_FLAGS, "debug")


def run(args: argparse.Namespace) -> int:
    """Export as `args` says; returns the exit code."""
    if args.rebuild and args.bundle is None:
        print("--rebuild replaces the engines of --bundle DIR; give the bundle, or drop --rebuild", file=sys.stderr)
        return 2
    given = _given(args)
    if args.bundle is not None:
        export_only = [_flag(dest) for dest in given if dest not in ENGINE_FLAGS]
        if export_only:
            verb = "applies" if len(export_only) == 1 else "apply"
            print(
                f"{', '.join(export_only)} {verb} to an export, not to --bundle DIR (engines from an existing "
                "bundle); drop it, or export without --bundle",
                file=sys.stderr,
            )
            return 2
        return _engines_for(args, set(given))
    if unused := _precision_flags_that_do_not_apply(args, given):
        print(unused, file=sys.stderr)
        return 2
    from export.bundle.build import export_bundle  # torch: only for a full export
    from export.bundle.defaults import resolve_default_weights
    from export.precision.convert import PrecisionOptions  # onnxconverter-common, onnxruntime.quantization too

    try:
        precision = PrecisionOptions(
            models=args.precision,
            int8_target=args.int8_target,
            calibration_dir=args.calibration_dir,
            min_agreement=args.min_agreement,
        )
        models = resolve_default_weights(args.anchornet, args.downstream, args.trained)
        out = export_bundle(
            models.anchornet,
            models.downstream,
            args.out,
            num_classes=args.num_classes,
            pooling=args.pooling,
            preset=args.preset or models.preset,
            vote_min=args.vote_min,
            branch_rule=args.branch_rule,
            heatmap=args.heatmap,
            anchor_vote=args.anchor_vote or 0.0,
            tolerance=args.tolerance,
            precision=precision,
            mean=args.mean,
            std=args.std,
            pixel_range=args.pixel_range,
            class_names=args.class_names,
            channel_order=args.channel_order,
            allow_pickle=args.allow_pickle,
            check_dir=args.check_dir,
        )
        print(f"wrote {out / 'bundle.json'}")
        if precision.converts:
            print(_precision_summary(out))
        available, reason = tensorrt_available()
        if not available:
            unused = [_flag(dest) for dest in given if dest in ENGINE_SHAPE_FLAGS]
            note = f" ({', '.join(unused)} unused: they shape the engines)" if unused else ""
            print(f"TensorRT engines not built: {reason}; the ONNX bundle runs on ONNX Runtime{note}")
            return 0
        if Precision.INT8 in precision.models.values() and precision.int8_target != Int8Target.TENSORRT:
            print(
                "TensorRT engines not built: the INT8 models use uint8 activations (--int8-target cpu), which "
                "TensorRT cannot run; re-export with --int8-target tensorrt to build engines"
            )
            return 0
    except (AnchorEdgeError, OSError) as error:
        if args.debug:
            raise
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    try:  # the bundle is written and runs on ONNX Runtime; only its engines can fail from here
        records = build_engines(
            out,
            max_batch=args.max_batch,
            max_patches=args.max_patches,
            workspace_bytes=int(args.workspace_gib * (1 << 30)),
            timing_cache=args.timing_cache,
        )
        record_engines(out, records)
    except (AnchorEdgeError, OSError) as error:
        if args.debug:
            raise
        print(
            f"wrote {out}, but not its TensorRT engines: {error}; build them later with "
            f"python export/to_trt.py --bundle {out}",
            file=sys.stderr,
        )
        return 1
    print(f"built TensorRT engines {', '.join(r.file for r in records.values())} in {out}")
    return 0


def _given(args: argparse.Namespace) -> list[str]:
    """The flags (their dests, in the parser's order) set to other than the parser's defaults."""
    defaults = vars(build_parser().parse_args([]))
    return [dest for dest, value in vars(args).items() if dest in defaults and value != defaults[dest]]


def _flag(dest: str) -> str:
    """A flag as typed: max_batch -> --max-batch."""
    return f"--{dest.replace('_', '-')}"


def _precision_flags_that_do_not_apply(args: argparse.Namespace, given: list[str]) -> str | None:
    """The usage error for INT8 flags without an INT8 model, or --min-agreement with nothing converted, else None."""
    precisions = set(args.precision.values())
    int8, converted = Precision.INT8 in precisions, precisions != {Precision.FP32}
    needs = (
        ("int8_target", int8, "an int8 model"),
        ("calibration_dir", int8, "an int8 model"),
        ("min_agreement", converted, "a model converted to fp16 or int8"),
    )
    unused = [f"{_flag(dest)} needs {need}" for dest, applies, need in needs if dest in given and not applies]
    if not unused:
        return None
    kept = ", ".join(f"{role} {precision}" for role, precision in args.precision.items())
    return f"{'; '.join(unused)} (--precision), and this export keeps {kept}: drop the flag, or convert"


def _engines_for(args: argparse.Namespace, given: set[str]) -> int:
    """--bundle DIR: build (or, with --rebuild, replace stale) engines from the bundle's ONNX files;
    no torch involved. `given`: the flags set to other than their defaults (`_given`)."""
    from anchor_edge.backends.trt.profiles import plan_profiles
    from anchor_edge.backends.trt.runner import engine_mismatches
    from anchor_edge.bundle import load_bundle

    try:
        bundle = load_bundle(args.bundle)
        for role in Role:  # uint8 activations: TensorRT's parser or builder would fail on the device, unexplained
            record = bundle.manifest.models[role].int8
            if record is not None and record.target is not Int8Target.TENSORRT:
                print(
                    f"{args.bundle}: models.{role} was quantized for ONNX Runtime's CPU ({record.activations} "
                    f"activations), which TensorRT cannot run; re-export with --precision {role}=int8 --int8-target "
                    "tensorrt to build engines",
                    file=sys.stderr,
                )
                return 1
        if bundle.manifest.engines:
            stale = {
                role: engine_mismatches(bundle, role) for role in Role if bundle.manifest.engines[role] is not None
            }
            if given & {"max_batch", "max_patches"}:  # sizes asked for: the engines must have been built for them
                plan = plan_profiles(
                    bundle.manifest, max_batch=args.max_batch, max_patches=args.max_patches, preset=bundle.preset
                )
                for role in stale:
                    if tuple(bundle.manifest.engines[role].profiles) != tuple(plan[role]):
                        stale[role].append(
                            f"built for other sizes than --max-batch {args.max_batch} --max-patches {args.max_patches}"
                        )
            reasons = [f"{role}: {'; '.join(why)}" for role, why in stale.items() if why]
            if not reasons and len(stale) == len(Role):
                unused = [_flag(dest) for dest in sorted(given & {"workspace_gib", "timing_cache"})]
                note = f" ({', '.join(unused)}: used only when building)" if unused else ""
                print(f"the engines in {args.bundle} fit this machine; nothing to build{note}")
                return 0
            if reasons and not args.rebuild:
                print(
                    f"engines in {args.bundle} do not fit ({'; '.join(reasons)}); pass --rebuild to replace them",
                    file=sys.stderr,
                )
                return 1
        records = build_engines(
            args.bundle,
            max_batch=args.max_batch,
            max_patches=args.max_patches,
            workspace_bytes=int(args.workspace_gib * (1 << 30)),
            timing_cache=args.timing_cache,
        )
        record_engines(args.bundle, records)
    except (AnchorEdgeError, OSError) as error:
        if args.debug:
            raise
        print(f"engine build failed: {error}", file=sys.stderr)
        return 1
    print(f"built TensorRT engines {', '.join(r.file for r in records.values())} in {args.bundle}")
    return 0


def _three_numbers(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, one per channel, got {text!r}")
    return values  # type: ignore[return-value]


def _precision_flag(text: str) -> dict[Role, Precision]:
    try:
        return parse_precision(text)
    except ValueError as error:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(error)) from error


def _precision_summary(out: Path) -> str:
    """One line: each model's precision and the Pipeline's agreement with FP32, from bundle.json."""
    manifest = read_manifest(out)
    check = manifest.precision
    assert check is not None, "convert_bundle records the check whenever a model changes precision"
    described = []
    for role in Role:
        entry = manifest.models[role]
        target = f" (for {entry.int8.target})" if entry.int8 is not None else ""
        described.append(f"{role} {entry.precision}{target}")
    models = ", ".join(described)
    return (
        f"precision: {models}; Pipeline top-1 agrees with FP32 on {check.pipeline_top1_agreement:.1%} of "
        f"{check.images} held-out images (max abs diff: AnchorNet probs {check.anchornet_probs.max_abs_diff:.3g}, "
        f"patch probs {check.patch_probs.max_abs_diff:.3g})"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    return run(args)
