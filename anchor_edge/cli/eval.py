"""`anchor-edge eval`: top-1, multiply-adds and paired time of a bundle on the user's labelled images.

    anchor-edge eval BUNDLE --data DIR [--held-out] [--preset P] [--branch-rule R] [--anchor-vote W] [--budget B]
                     [--early-exit T]
                     [--backend ...] [--compare BUNDLE2] [--compare-backend B2] [--json] [--png FILE]

DIR holds one subfolder of images per class, named as the bundle's classes
(or train/ and val/ (test/) splits of them: val/ is evaluated; --held-out
takes only the files `python -m export.train --data DIR` held out of a
folder without splits, so a bundle trained there is scored on images it
did not learn). The
pipeline, the bundle's downstream on the whole image and AnchorNet's decided
class are scored on every image; the pipeline and the full image are timed
per image, in pairs. With --compare (and/or --compare-backend) a second
bundle, or the same one on another backend, is scored on the same images.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from anchor_edge.cli.options import (
    add_backend_options,
    add_common_flags,
    add_decision_options,
    backend_keywords,
    decision_keywords,
    threshold,
)
from anchor_edge.errors import InputError
from anchor_edge.evaluation.folder import HELD_OUT_EVERY
from anchor_edge.method.lsp import PRESETS

if TYPE_CHECKING:
    from anchor_edge.evaluation.folder import LabelledFolder
    from anchor_edge.evaluation.score import Evaluation
    from anchor_edge.pipeline import Pipeline

log = logging.getLogger("anchor_edge")


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval", help="top-1, multiply-adds and paired time of a bundle on your own labelled images"
    )
    evaluate.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory")
    evaluate.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="DIR/<class>/ images, folders named as the bundle's classes; or DIR/train/ + DIR/val/ (val/ is used)",
    )
    evaluate.add_argument(
        "--held-out",
        action="store_true",
        help="a folder without train/ and val/: only the files `python -m export.train --data DIR` held out "
        f"(every {HELD_OUT_EVERY}th of each class, by path)",
    )
    evaluate.add_argument("--preset", choices=sorted(PRESETS), help="LSP preset (default: the bundle's)")
    add_decision_options(evaluate)
    evaluate.add_argument(
        "--budget",
        type=float,
        metavar="B",
        help="cap each image's downstream multiply-adds at B x the full image's, patches in LSP order",
    )
    evaluate.add_argument(
        "--early-exit",
        type=threshold,
        metavar="T",
        help="stop classifying an image's patches once their mean softmax has a class >= T (0: one patch)",
    )
    add_backend_options(evaluate)
    compare = evaluate.add_argument_group("comparison (a second bundle, or this one on another backend)")
    compare.add_argument(
        "--compare", type=Path, metavar="BUNDLE2", help="a second bundle scored on the same images (an INT8 twin)"
    )
    compare.add_argument(
        "--compare-backend",
        choices=("onnxruntime", "openvino", "tensorrt"),
        metavar="B2",
        help="the second side's backend (default: --backend with the same options; another backend runs with its "
        "defaults, and --threads where it takes threads); alone, it compares BUNDLE on B2",
    )
    evaluate.add_argument("--json", action="store_true", help="print the full report as one JSON object")
    evaluate.add_argument("--png", type=Path, metavar="FILE", help="also draw per-class top-1 and paired times")
    add_common_flags(evaluate)
    evaluate.set_defaults(handler=run, subparser=evaluate)


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from anchor_edge.evaluation.folder import read_labelled_folder
    from anchor_edge.evaluation.report import require_matplotlib, save_png, table
    from anchor_edge.evaluation.summary import agreement, summarize
    from anchor_edge.pipeline import Pipeline

    if args.png is not None:  # before the evaluation, not after it: a missing matplotlib is known at once
        if args.png.suffix.lower() != ".png":
            raise InputError(f"--png {args.png}: give a file name that ends in .png")
        require_matplotlib()
    comparing = args.compare is not None or args.compare_backend is not None
    with ExitStack() as stack:
        # Both sides open, and read the folder for their classes, before either scores an image: a second bundle
        # that cannot run, or has other classes, is known at once rather than after the first side's whole run.
        opened: list[tuple[Path, Pipeline, LabelledFolder]] = []
        for side in range(2 if comparing else 1):
            bundle = args.bundle if side == 0 else args.compare or args.bundle
            keywords = backend_keywords(args) if side == 0 else _compare_keywords(args, opened[0][1].backend)
            pipe = stack.enter_context(Pipeline.from_bundle(bundle, **_options(args, keywords)))
            log.info("bundle %s on %s", bundle, pipe.anchornet.describe())
            if side == 1 and pipe.bundle.class_names != opened[0][1].bundle.class_names:
                raise InputError(
                    f"--compare {bundle} has the classes {list(pipe.bundle.class_names)}, {args.bundle} "
                    f"{list(opened[0][1].bundle.class_names)}: agreement is counted class by class, so compare "
                    "bundles with the same classes in the same order"
                )
            opened.append(
                (bundle, pipe, read_labelled_folder(args.data, pipe.bundle.class_names, held_out_only=args.held_out))
            )
        evaluations = [_evaluate(bundle, pipe, folder, args) for bundle, pipe, folder in opened]
    summary = summarize(evaluations[0])
    compared = None
    if len(evaluations) == 2:
        compared = {**summarize(evaluations[1]), "agreement": agreement(*evaluations)}
    if args.json:
        print(json.dumps({**summary, "compare": compared}), flush=True)
    else:
        print(table(summary, compared), flush=True)
        if summary["skipped"]:
            print(f"anchor-edge: {len(summary['skipped'])} image file(s) skipped; --json lists them", file=sys.stderr)
    if args.png is not None:  # after the results are out: a chart that cannot be written loses nothing else
        log.info("wrote %s", save_png(args.png, summary, compared))
    return 0


def _options(args: argparse.Namespace, keywords: dict) -> dict:
    """Pipeline.from_bundle's keywords for one side: the method's flags and that side's backend."""
    return dict(
        preset=args.preset,
        **decision_keywords(args),
        early_exit=args.early_exit,
        budget=args.budget,
        **keywords,
    )


def _evaluate(bundle: Path, pipe: Pipeline, folder: LabelledFolder, args: argparse.Namespace) -> Evaluation:
    """Score every image of the labelled folder on the opened pipeline, with a progress bar."""
    from tqdm import tqdm

    from anchor_edge.evaluation.score import evaluate

    def bar(files):
        return tqdm(files, desc=f"eval {bundle.name}", unit="image", disable=None, leave=False, mininterval=1)

    return evaluate(pipe, folder, preset=args.preset, progress=bar)


def _compare_keywords(args: argparse.Namespace, first_backend: str) -> dict:
    """The second side's backend keywords: the first side's where it runs on the backend the first side runs on
    (`first_backend`, what --backend auto chose), else another backend's defaults (with --threads)."""
    keywords = backend_keywords(args)
    if args.compare_backend is None:
        return keywords
    if args.compare_backend == first_backend:
        return {**keywords, "backend": args.compare_backend}
    from anchor_edge.backends.options import OPTIONS_BY_BACKEND, option_names

    takes_threads = "threads" in option_names(OPTIONS_BY_BACKEND[args.compare_backend])
    threads = {"threads": keywords["threads"]} if "threads" in keywords and takes_threads else {}
    return {"backend": args.compare_backend, **threads}
