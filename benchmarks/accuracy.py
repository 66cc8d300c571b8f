"""Accuracy of the patch pipeline against the full image and plain rescaling (paper Tables 3 and 4, Figure 6).

    python -m benchmarks.accuracy                   # bundles/default, 1000 test images
    python -m benchmarks.accuracy --images 300 --json acc.json --png acc.png

Data: the test split of `export.data.digits` (held-out MNIST digits on held-out
photos, three scales), fed through the runtime: the bundle opens as a
`Pipeline` on ONNX Runtime and every number comes from its stages
(preprocess, localize, the decision rule, LSP, classify_patches). The two
baseline classifiers the bundle does not carry (full-image-trained and
resized-trained, same architecture) come from `python -m export.training.baselines`
(bundles/default-baselines) and run on the same ONNX Runtime runner.

Reported: top-1 of the full image, of the patches under each LSP preset
(and the `accurate` preset's patches with early exit at a few thresholds,
and under a few cost budgets, alone and with early exit), of
the input resized to each patch size, and of one patch per image at each
size (the Table 4 analog); downstream multiply-adds per image for each
(AnchorNet's are reported apart, as in the paper); images and patches per
branch; chosen branch against the digit's true scale; how often the first
patch contains the digit's centre (and the whole digit), per branch.

Exit codes: 0 success, 1 missing bundle or baselines, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from anchor_edge.backends.ort import OrtRunner
from anchor_edge.bundle import Bundle, load_bundle
from anchor_edge.bundle.baselines import BaselineEntry, read_baselines_for
from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from anchor_edge.errors import AnchorEdgeError, BundleError, InputError
from anchor_edge.method.budget import bundle_costs, within_budget
from anchor_edge.method.early_exit import classified_sizes, classify_until_confident
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.patches import cut_by_size, decide_all, select_all, select_boxes
from anchor_edge.method.preprocess import normalize
from anchor_edge.pipeline import Pipeline, softmax
from benchmarks.accuracy_report import (
    BUDGET_EARLY_EXIT,
    BUDGETS,
    EARLY_EXIT_THRESHOLDS,
    budget_key,
    early_exit_key,
    summarize,
    table,
    write_chart,
)
from benchmarks.report import environment, write_json
from export.data.digits import SCALE_FIELDS, make_sample

DEFAULT_BUNDLE = Path("bundles/default")
DEFAULT_BASELINES = Path("bundles/default-baselines")


def read_both_baselines(baselines_dir: Path, downstream: str) -> tuple[BaselineEntry, BaselineEntry]:
    """The full-image and the resized baseline of the bundle's `downstream` network; BundleError when they are of
    another network, or its recipe trains no resized one."""
    models = read_baselines_for(baselines_dir, downstream).models
    if models.resized is None:
        raise BundleError(
            f"{baselines_dir} has no resized baseline ({models.full.name}'s recipe trains none), and this "
            "benchmark compares against one; python -m benchmarks.pays compares with the full image alone"
        )
    return models.full, models.resized


def evaluate(
    bundle_dir: Path, baselines_dir: Path, images: int, *, batch: int = 16, threads: int | None = None, seed: int = 0
) -> list[dict]:
    """One record per test image: truth, the runtime's choices, and every method's predicted class."""
    bundle = load_bundle(bundle_dir)
    if bundle.anchor_vote:  # every method below is scored by its patches alone, as the paper does
        raise InputError(
            f"{bundle_dir} gives AnchorNet a vote (decision.anchor_vote {bundle.anchor_vote}); this benchmark scores "
            "the paper's rule: export the bundle with --anchor-vote 0 (to_trt.py), or measure it with anchor-edge eval"
        )
    full, resized = read_both_baselines(baselines_dir, bundle.downstream.name)
    base = {
        kind: OrtRunner(baselines_dir / entry.file, threads=threads)
        for kind, entry in (("full", full), ("resized", resized))
    }
    pipes = {
        name: Pipeline.from_bundle(bundle_dir, backend="onnxruntime", preset=name, threads=threads) for name in PRESETS
    }
    main = pipes["accurate"]
    downstream = bundle.downstream
    records = []
    for start in tqdm(range(0, images, batch), desc="accuracy", unit="batch"):
        samples = [make_sample("test", i, seed) for i in range(start, min(images, start + batch))]
        crops, _ = main.preprocess([s.image for s in samples])
        anchor_in = normalize(crops, bundle.anchornet.mean, bundle.anchornet.std)
        down_in = normalize(crops, downstream.mean, downstream.std)
        base_in = normalize(crops, full.mean, full.std)
        anchor = main.run_anchornet(anchor_in)
        decisions = decide_all(anchor, main.vote_min, main.branch_rule)
        rows = [_truth(s, d) for s, d in zip(samples, decisions)]
        for name, pipe in pipes.items():
            boxes = select_all(anchor, decisions, bundle.branches, pipe.lsp, heatmap=pipe.heatmap)
            _record(rows, f"patches_{name}", boxes, pipe.classify_normalized(down_in, boxes))
            if name == "accurate":
                for row, image_boxes in zip(rows, boxes):
                    row["first_box"] = [int(v) for v in image_boxes[0]]
                _early_exits(rows, pipe, down_in, boxes, bundle.num_classes)
                _budgets(rows, pipe, down_in, boxes, bundle)
        _classify(rows, "full_bundle", main.downstream, down_in)
        _classify(rows, "full", base["full"], base_in)
        for branch, size in enumerate(SCALE_FIELDS):
            shrunk = np.stack(
                [
                    cv2.resize(x.transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
                    for x in base_in
                ]
            )
            _classify(rows, f"resized_{size}", base["resized"], shrunk)
            _classify(rows, f"resized_{size}_full_trained", base["full"], shrunk)
            first = [
                select_boxes(anchor, i, c, bundle.branches[branch], main.lsp, main.heatmap)[:1]
                for i, (c, _) in enumerate(decisions)
            ]
            for kind, runner_in, runner in (
                ("patch", down_in, main.downstream),
                ("patch_full_trained", base_in, base["full"]),
            ):
                _, cut = cut_by_size(runner_in, first)[size]  # one patch per image, in image order
                _classify(rows, f"one_{kind}_{size}", runner, cut)
        records.extend(rows)
    for pipe in pipes.values():
        pipe.close()
    return records


def _early_exits(
    rows: list[dict], pipe: Pipeline, down_in: np.ndarray, boxes: list[np.ndarray], num_classes: int
) -> None:
    """The preset's patches classified in LSP order until confident, at each benchmarked threshold
    (anchor_edge/method/early_exit.py)."""
    for threshold in EARLY_EXIT_THRESHOLDS:
        key = early_exit_key(threshold)
        _record(
            rows, key, boxes, classify_until_confident(pipe.classify_normalized, down_in, boxes, threshold, num_classes)
        )


def _budgets(rows: list[dict], pipe: Pipeline, down_in: np.ndarray, boxes: list[np.ndarray], bundle: Bundle) -> None:
    """The preset's patches under each benchmarked budget, alone and with early exit (anchor_edge/method/budget.py)."""
    costs, full = bundle_costs(bundle)
    for budget in BUDGETS:
        capped = within_budget(boxes, costs, budget * full)
        _record(rows, budget_key(budget), capped, pipe.classify_normalized(down_in, capped))
        used = classify_until_confident(
            pipe.classify_normalized, down_in, capped, BUDGET_EARLY_EXIT, bundle.num_classes
        )
        _record(rows, budget_key(budget, BUDGET_EARLY_EXIT), capped, used)


def _record(rows: list[dict], key: str, boxes: list[np.ndarray], patch_probs: list[np.ndarray]) -> None:
    """One method's class per image (argmax of its summed patch softmaxes) and the sizes of the patches it
    classified (with early exit, those its last round ran past the confident one too)."""
    for row, image_boxes, probs in zip(rows, boxes, patch_probs):
        row[key] = int(probs.sum(0).argmax())
        row[f"patch_sizes_{key}"] = list(classified_sizes(image_boxes, len(probs)))


def _truth(sample, decision: tuple[int, int]) -> dict:
    return {
        "label": sample.label,
        "scale": sample.scale,
        "box": list(sample.box),
        "anchor_class": decision[0],
        "branch": decision[1],
    }


def _classify(rows: list[dict], key: str, runner, batch: np.ndarray) -> None:
    logits = runner.run({INPUT_NAME: np.ascontiguousarray(batch, np.float32)}, [LOGITS_OUTPUT])[LOGITS_OUTPUT]
    for row, probs in zip(rows, softmax(logits)):
        row[key] = int(probs.argmax())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")
    parser.add_argument(
        "--baselines",
        type=Path,
        default=DEFAULT_BASELINES,
        help="from export/training/baselines.py (default: %(default)s)",
    )
    parser.add_argument("--images", type=int, default=1000, help="test images (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--png", type=Path, help="write accuracy against multiply-adds here")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    try:
        bundle = load_bundle(args.bundle)
        full, resized = read_both_baselines(args.baselines, bundle.downstream.name)  # refused before any work
        records = evaluate(args.bundle, args.baselines, args.images, threads=args.threads)
    except AnchorEdgeError as error:
        print(f"accuracy benchmark failed: {error}", file=sys.stderr)
        return 1
    report = {
        "environment": environment(None),  # the commit and machine, as every benchmark report carries them
        "bundle": {"path": str(args.bundle), "sha256": bundle.model_sha256s},  # for the docs' stamps
        **summarize(records, bundle.manifest, full, resized),
    }
    print(table(report))
    if args.json:
        write_json(args.json, report)
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        write_chart(args.png, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
