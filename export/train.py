"""Train every model a bundle needs, within one time budget: on the digits benchmark or on your own folder.

    python -m export.train                          # the digits benchmark, 120 minutes, weights into weights/
    python -m export.train --data photos/ --out runs/photos --bundle bundles/photos
    python -m export.train --data photos/ --downstream resnet50:my_resnet.pt --keep-downstream --bundle bundles/mine
                                                    # (weights into runs/photos: a folder's run keeps weights/ intact)

With --data DIR (one subfolder of images per class, docs/exporting.md) and
--downstream SPEC (any spec export/to_trt.py takes that names a network and
its weights; default efficientnet_lite0): a trained downstream (a
checkpoint) teaches AnchorNet where the classes are, an untrained one first
learns the folder's whole images and then teaches; AnchorNet trains on the
image-level labels plus the teacher's class activation peak; then the
downstream is fine-tuned on the patches AnchorNet localizes, unless
--keep-downstream leaves the user's network bit-identical
(export/training/folder_steps.py). --bundle also exports the result, so one
command gives a bundle, with AnchorNet's vote in the class chosen on the
training files no step trained on (export/training/anchor_vote.py).
Without --data: the digits benchmark, where AnchorNet is box-supervised
(export/training/box_supervision.py). --architecture picks the downstream's
recipe (export/training/downstream.py): resnet50 learns from scratch (a trunk,
then the full-image baseline and the patch network fine-tuned from it for the
same steps), efficientnet_lite0 fine-tunes its ImageNet backbone and adds a
downstream trained on resized images for the rescaling baseline.

Each step gets a fixed share of the budget, checkpoints into --work-dir
(for a folder, OUT/checkpoints by default, so each --out is a run of its
own) and resumes from there, so rerunning the same command after a stop
continues the step that stopped; use a fresh --work-dir for a fresh run.
Seeds are fixed; a run the budget does not cut short is reproducible.

Exit codes: 0 success, 1 bad data or a failed export, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.errors import AnchorEdgeError
from anchor_edge.evaluation.folder import held_out_split
from export.data.source import DIGITS
from export.models.downstream import DEFAULT_ARCHITECTURE, EFFICIENTNET_LITE0, RESNET50, split_checkpoint
from export.models.trained_weights import ANCHORNET_FILE, downstream_weights
from export.training.anchornet import train_anchornet
from export.training.common import (
    add_recipe_arguments,
    apply_recipe_arguments,
    default_work_dir,
    exit_code_of,
    steps_that_run,
)
from export.training.downstream import train_downstream

#: Per downstream architecture, (step, share of the budget, images planned for its schedule) on the digits
#: benchmark. On 2 CPU cores AnchorNet's plan fits its share and the downstream plans run into theirs (with
#: bf16; twice the time without it); on a GPU all finish early. The committed weights had budgets of their
#: own, step by step (docs/benchmarks/training_report.json).
DIGITS_PLANS = {
    RESNET50: (
        ("anchornet", 0.35, 200_000),
        ("trunk", 0.4, 110_000),
        ("full", 0.15, 12_000),
        ("patches", 0.1, 12_000),
    ),
    EFFICIENTNET_LITE0: (
        ("anchornet", 0.55, 200_000),
        ("full", 0.2, 16_000),
        ("resized", 0.1, 20_000),
        ("patches", 0.15, 8_000),
    ),
}
STEPS = ("anchornet", "trunk", "full", "resized", "patches")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.split("\n\n")[0])
    add_recipe_arguments(
        parser,
        out_default=None,
        out_help="weights/ for the digits benchmark, runs/NAME for --data NAME",
        work_dir_help=f"{default_work_dir()} for the digits benchmark, OUT/checkpoints for --data",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="your own images, one subfolder per class (default: the digits benchmark)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=_positive,
        default=120.0,
        help="wall clock shared by the training steps that run (all, or those of --only); reading the images and "
        "the export come on top (default: %(default)s)",
    )
    parser.add_argument(
        "--scale", type=_positive, default=1.0, help="multiply every step's planned images (e.g. 4 on a GPU)"
    )
    parser.add_argument(
        "--only",
        type=_steps,
        metavar="STEPS",
        help=f"comma-separated steps to run, of {', '.join(STEPS)} (default: all)",
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(DIGITS_PLANS),
        help=f"the downstream's recipe on the digits benchmark (default: {DEFAULT_ARCHITECTURE})",
    )
    parser.add_argument(
        "--downstream",
        metavar="SPEC",
        help="with --data: your downstream network, NAME[:CKPT], timm:NAME[:CKPT] or "
        "MODULE:CALLABLE[:CKPT]; with CKPT it is trained and teaches AnchorNet "
        f"(default: {EFFICIENTNET_LITE0}, trained on the folder first)",
    )
    parser.add_argument(
        "--keep-downstream",
        action="store_true",
        help="with --data and a trained --downstream: bundle it bit-identical, no patch fine-tuning",
    )
    parser.add_argument(
        "--no-mirror",
        dest="mirror",
        action="store_false",
        help="with --data: never mirror training images (for classes a mirror changes: digits, letters, signs)",
    )
    parser.add_argument("--bundle", type=Path, metavar="DIR", help="also export the trained models as a bundle here")
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    args.out = args.out or default_out(args.data)
    args.work_dir = args.work_dir or (default_work_dir() if args.data is None else args.out / "checkpoints")
    if args.data is None and (args.downstream or args.keep_downstream):
        parser.error(
            "--downstream and --keep-downstream train on your folder (--data DIR); on the digits benchmark "
            "pick the downstream with --architecture"
        )
    if args.data is None and not args.mirror:
        parser.error("--no-mirror is for your folder (--data DIR); the digits benchmark never mirrors its digits")
    if args.data is not None and args.architecture is not None:
        parser.error(
            f"--architecture {args.architecture} trains on the digits benchmark only; on a folder give "
            "--downstream SPEC"
        )
    if args.data is not None:
        _check_folder_usage(parser, args)
    if args.data is None and args.only:
        planned = [step for step, _, _ in DIGITS_PLANS[args.architecture or DEFAULT_ARCHITECTURE]]
        if not_planned := [step for step in args.only if step not in planned]:
            parser.error(
                f"--only {','.join(not_planned)}: not a step of the {args.architecture or DEFAULT_ARCHITECTURE} "
                f"recipe, whose steps are {', '.join(planned)}"
            )
    return exit_code_of(lambda: _train_and_export(args))


def _check_folder_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors of a run on a folder (exit 2), found before any image is read: a digits step in --only, and
    --keep-downstream with a downstream that names no weights (a spec that does not parse is training's error)."""
    from export.training.folder_steps import FOLDER_STEPS, keep_needs_weights

    if digits_only := [step for step in args.only or () if step not in FOLDER_STEPS]:
        parser.error(
            f"--only {','.join(digits_only)}: a step of the digits benchmark; a folder's steps are "
            f"{', '.join(FOLDER_STEPS)} (full only for an untrained --downstream)"
        )
    spec = args.downstream or EFFICIENTNET_LITE0
    try:
        untrained = split_checkpoint(spec)[1] is None
    except AnchorEdgeError:
        untrained = False
    if args.keep_downstream and untrained:
        parser.error(keep_needs_weights(spec))


def _train_and_export(args: argparse.Namespace) -> None:
    """Every step the arguments ask for, the report, and the bundle (or the lines that export and score it)."""
    held_back: tuple = ()
    if args.data is not None:
        reports, downstream, held_back = _train_folder(args)
    else:
        reports, downstream = _train_digits(args)
    report_path = args.out / "training_report.json"
    # the vote an earlier export chose describes models this run may have retrained: a new export chooses again
    write_report(report_path, reports, partial=args.only is not None, stale=("anchor_vote",))
    if args.bundle is not None:
        vote = _export(args.out / ANCHORNET_FILE, downstream, args.bundle, args.data, held_back)
        if vote:
            write_report(report_path, {"anchor_vote": vote}, partial=True)
        print(f"bundle in {args.bundle}; try it: anchor-edge predict IMAGE --bundle {args.bundle}")
    else:
        command = _export_command(args.out / ANCHORNET_FILE, downstream, args.data)
        print(f"weights in {args.out}; export them with: {command}")
        if held_back:
            print(
                f"that export keeps the paper's rule (anchor vote 0): only --bundle chooses AnchorNet's vote, on the "
                f"{len(held_back)} files this run held back from training; rerun this command with --bundle DIR, "
                "which keeps the finished steps, to have it chosen"
            )
    if args.data is not None:
        print(f"measure the bundle on the images it did not train on: {_eval_command(args.bundle, args.data)}")


def default_out(data: Path | None) -> Path:
    """Where the weights go without --out: weights/ for the digits benchmark (the committed weights), runs/NAME for
    a folder NAME, so training on a folder never replaces them."""
    return Path("weights") if data is None else Path("runs") / data.resolve().name


def write_report(path: Path, reports: dict, *, partial: bool, stale: tuple[str, ...] = ()) -> None:
    """This run's step reports, written atomically; a `partial` (`--only`) rerun keeps the other steps' reports of
    the earlier run into the same --out, but for the `stale` ones, and a whole run replaces them (they may be of
    another downstream)."""
    earlier = json.loads(path.read_text()) if partial and path.is_file() else {}
    kept = {step: report for step, report in earlier.items() if step not in stale}
    write_atomically(path, (json.dumps({**kept, **reports}, indent=2) + "\n").encode())


def _train_folder(args: argparse.Namespace) -> tuple[dict, str, tuple]:
    """Every step on the user's folder for their downstream (export/training/folder_steps.py): the reports, the
    bundle's downstream spec and the (file, label) pairs held back from training to choose the vote on."""
    from export.data.folder import TUNE, ImageFolder
    from export.training.folder_steps import train_on_folder
    from export.training.user_downstream import open_user_downstream

    user = open_user_downstream(args.downstream or EFFICIENTNET_LITE0)
    folder = ImageFolder.open(args.data, mirror=args.mirror)
    reports, downstream = train_on_folder(
        folder,
        user,
        out=args.out,
        work_dir=args.work_dir,
        budget_minutes=args.budget_minutes,
        scale=args.scale,
        seed=args.seed,
        only=args.only,
        keep=args.keep_downstream,
    )
    return reports, downstream, folder.files.get(TUNE, ())


def _train_digits(args: argparse.Namespace) -> tuple[dict, str]:
    """Every step of the digits benchmark's plan for --architecture; the reports and the bundle's downstream spec."""
    architecture, source = args.architecture or DEFAULT_ARCHITECTURE, DIGITS
    reports = {}
    for step, share, images in steps_that_run(DIGITS_PLANS[architecture], args.only):
        minutes = args.budget_minutes * share
        planned = max(1, int(images * args.scale))
        if step == "anchornet":
            reports[step] = train_anchornet(
                args.out, images=planned, budget_minutes=minutes, seed=args.seed, work_dir=args.work_dir, source=source
            )
        else:
            reports[step] = train_downstream(
                step,
                args.out,
                architecture=architecture,
                images=planned,
                budget_minutes=minutes,
                seed=args.seed,
                work_dir=args.work_dir,
                source=source,
            )
    return reports, f"{architecture}:{downstream_weights(args.out, architecture, 'patches')}"


def _export(anchornet: Path, downstream: str, bundle: Path, data: Path | None, held_back: tuple) -> dict:
    """The trained AnchorNet and patch-tuned downstream as an FP32 bundle (export/bundle/build.py), recording the
    LSP preset whose patches the downstream was fine-tuned on; trained on a folder, its check set is that folder's
    held-out images, so `anchor-edge verify` checks what the user trains for, and AnchorNet's vote is chosen on the
    `held_back` files (export/training/anchor_vote.py). Returns the vote's report (empty without a folder)."""
    from export.bundle.build import export_bundle
    from export.training.anchor_vote import vote_chooser
    from export.training.downstream import FINE_TUNING_PRESET

    vote: dict = {}
    chooser = vote_chooser(held_back, vote) if data is not None else 0.0
    export_bundle(anchornet, downstream, bundle, preset=FINE_TUNING_PRESET, check_dir=data, anchor_vote=chooser)
    return vote


def _export_command(anchornet: Path, downstream: str, data: Path | None) -> str:
    """The to_trt.py line (quoted for a shell) that exports what `_export` would: the same preset and, for a
    folder, its check set, into a bundle of its own, never the default bundle's directory."""
    from export.training.downstream import FINE_TUNING_PRESET

    argv = ["python", "export/to_trt.py", "--anchornet", str(anchornet), "--downstream", downstream]
    argv += ["--preset", FINE_TUNING_PRESET]
    if data is not None:
        argv += ["--check-dir", str(data), "--out", str(_folder_bundle(data))]
    return shlex.join(argv)


def _folder_bundle(data: Path) -> Path:
    """Where the printed to_trt.py line puts a folder's bundle: bundles/NAME, never the default bundle's directory."""
    from export.cli import DEFAULT_BUNDLE

    out = DEFAULT_BUNDLE.parent / data.resolve().name
    return out if out != DEFAULT_BUNDLE else out.with_name("default-folder")


def _eval_command(bundle: Path | None, data: Path) -> str:
    """The `anchor-edge eval` line (quoted for a shell) that scores the folder's bundle on the images training did not
    see: the folder's val/ (test/), or with --held-out the files it held out of a folder without splits."""
    argv = ["anchor-edge", "eval", str(bundle or _folder_bundle(data)), "--data", str(data)]
    return shlex.join(argv + (["--held-out"] if held_out_split(data) == data else []))


def _steps(text: str) -> tuple[str, ...]:
    steps = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [step for step in steps if step not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"steps must be some of {', '.join(STEPS)}, got {text!r}")
    return steps


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
