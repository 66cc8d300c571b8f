"""One report of a run on a user's folder: how it trained and what its bundle gives on the folder's held-out images.

    python -m export.train --data DIR --out W --bundle B                  # train (export/train.py)
    python -m benchmarks.folder_run B --data DIR --weights W --out docs/benchmarks/folder_x.json

The training half is W/training_report.json as `export.train` wrote it
(minutes and images per step, the teacher's maps, AnchorNet's held-out
figures); the result half is `anchor-edge eval B --data DIR` (top-1 of the
pipeline, of the bundle's downstream on the whole image and of AnchorNet's
decided class; multiply-adds; paired times), without its per-image rows. The
file carries the machine, the commit measured at and the bundle's sha256s,
so docs can quote it (docs/benchmarks/README.md). Time the eval on a quiet
machine: its paired ratio is a measurement.

Exit codes: 0 done, 1 a missing bundle, folder or training report, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anchor_edge import Pipeline
from anchor_edge.cli.options import add_decision_options, decision_keywords
from anchor_edge.errors import AnchorEdgeError
from anchor_edge.evaluation.folder import HELD_OUT_EVERY, held_out_split, read_labelled_folder
from anchor_edge.evaluation.report import table
from anchor_edge.evaluation.score import evaluate
from anchor_edge.evaluation.summary import summarize
from anchor_edge.method.lsp import PRESETS
from benchmarks.report import environment, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.folder_run", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="the bundle export.train wrote (--bundle)")
    parser.add_argument("--data", type=Path, required=True, help="the folder it trained on")
    parser.add_argument("--weights", type=Path, required=True, help="export.train's --out (its training_report.json)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="LSP preset (default: the bundle's)")
    add_decision_options(parser)
    parser.add_argument("--budget", type=float, metavar="B", help="cap each image's patches at B x the full image's")
    parser.add_argument("--threads", type=int, default=2, help="threads per model (default: %(default)s)")
    parser.add_argument("--note", help="what the run was, stored in the report")
    args = parser.parse_args(argv)
    try:
        training = json.loads((args.weights / "training_report.json").read_text(encoding="utf-8"))
        settings = dict(preset=args.preset, budget=args.budget, **decision_keywords(args))
        with Pipeline.from_bundle(args.bundle, backend="onnxruntime", threads=args.threads, **settings) as pipe:
            shas = pipe.bundle.model_sha256s
            flat = held_out_split(args.data) == args.data  # no train/ + val/: the files training held out
            folder = read_labelled_folder(args.data, pipe.bundle.class_names, held_out_only=flat)
            summary = summarize(evaluate(pipe, folder, preset=args.preset))
    except (AnchorEdgeError, OSError, ValueError) as error:
        print(f"folder_run: {error}", file=sys.stderr)
        return 1
    print(table(summary, None))
    summary.pop("predictions")
    report = {
        "benchmark": "folder training (export.train --data) and anchor-edge eval on its held-out images",
        "environment": environment(args.note),
        "bundle": {"path": str(args.bundle), "sha256": shas},
        "scored": (
            f"the files training held out of {args.data} (every {HELD_OUT_EVERY}th file of a class folder, by path)"
            if flat
            else f"every image of {folder.split}"
        ),
        "training": training,
        "eval": summary,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
