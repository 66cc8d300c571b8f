"""Does it pay? Top-1, downstream multiply-adds and measured time of every method, on the same bundle and images.

    python -m benchmarks.pays                               # bundles/default, its baselines, the 600 test images
    python -m benchmarks.pays --fresh --json out/pays.json  # also 1,200 fresh test draws (test seeds 11 and 12)

Methods: the full image (the downstream architecture trained on full images,
`python -m export.training.baselines`: the baseline the patches must match),
the bundle's own patch pipeline under each LSP preset, under cost budgets and
with early exit; and AnchorNet's decided class alone. Every pipeline row is
`Pipeline.predict_batch` as a user calls it (ONNX Runtime), so its top-1,
its patches and its time are the product's, not a re-implementation's.

Time: every method runs once per round on the same batch of test images,
rounds interleaved (benchmarks/measure.py), and each row's ratio to the full
image is the median of the per-round ratios (paired). The stage split of the
bundle's own preset says where the pipeline's time goes; "host" is the
pipeline's wall time outside the two networks' runs. Each image set is timed
on 64 of its own images that hold each branch (patch size) of the bundle's
own preset in the proportion the whole set does, spread over the set: a
patch's run costs more the larger it is, so a sample heavy in one size would
misstate the time of the top-1 beside it.

Exit codes: 0 done, 1 missing bundle or baselines, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from anchor_edge import Pipeline
from anchor_edge.backends.ort import OrtRunner
from anchor_edge.bundle import load_bundle
from anchor_edge.bundle.baselines import read_baselines_for
from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from anchor_edge.errors import AnchorEdgeError
from anchor_edge.method.budget import bundle_costs
from anchor_edge.method.lsp import preset_params
from anchor_edge.method.preprocess import normalize, resize_and_crop
from anchor_edge.pipeline import softmax
from anchor_edge.prediction import Prediction
from benchmarks import report
from benchmarks.measure import interleaved, paired_ratio, summarize
from export.data.digits import make_sample

DEFAULT_BUNDLE = Path("bundles/default")
DEFAULT_BASELINES = Path("bundles/default-baselines")
#: The accuracy benchmark's 600 test images (seed 0), and the fresh draws no recipe was tuned on.
TEST_SEED, TEST_IMAGES = 0, 600
FRESH_SEEDS = (11, 12)
FULL_IMAGE = "full image"
ANCHORNET = "AnchorNet alone"
#: Images of each set that the timing runs over (`representative`).
TIMED_IMAGES = 64
#: Prediction.timings keys holding the time inside the networks' runs; the rest of the wall time is host work.
MODEL_TIMES = ("model_anchornet", "model_downstream")


class Method(NamedTuple):
    """One row: a name and the Pipeline options that make it (None: the full-image baseline)."""

    name: str
    options: Mapping[str, object] | None


METHODS = (
    Method(FULL_IMAGE, None),
    Method("fast", {"preset": "fast"}),
    Method("visual", {"preset": "visual"}),
    Method("accurate", {"preset": "accurate"}),
    Method("budget 0.3", {"preset": "accurate", "budget": 0.3}),
    Method("budget 0.55", {"preset": "accurate", "budget": 0.55}),
    Method("early exit 0.5", {"preset": "accurate", "early_exit": 0.5}),
)

#: A method's answer for a batch of BGR images: (class per image, downstream multiply-adds per image).
Classify = Callable[[Sequence[np.ndarray]], tuple[list[int], list[int]]]


def test_images(seeds: Sequence[int], count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` digits test images per seed (BGR 256 x 256) and their labels."""
    samples = [make_sample("test", index, seed) for seed in seeds for index in range(count)]
    return [s.image for s in samples], np.array([s.label for s in samples])


@contextmanager
def open_methods(
    bundle_dir: Path, baselines_dir: Path, threads: int | None
) -> Iterator[tuple[dict[str, Classify], dict[str, Pipeline]]]:
    """Every method's classify function, and the pipelines behind them by method name; every runner opened here
    is closed when the block ends, or as soon as opening one of them fails.

    The pipelines share the bundle's two runners, as one application switching presets would: every method then
    runs on the same ONNX Runtime sessions, whose weights the previous method's run left in the caches, rather
    than on a copy of ResNet-50 of its own that the other six copies have evicted.
    """
    bundle = load_bundle(bundle_dir)
    baseline = read_baselines_for(baselines_dir, bundle.downstream.name).models.full
    patch_cost, full_cost = bundle_costs(bundle)  # the report counts both; a bundle that lacks them is refused here
    with ExitStack() as opened_here:
        full_runner = opened_here.enter_context(OrtRunner(baselines_dir / baseline.file, threads=threads))

        def full_image(images: Sequence[np.ndarray]) -> tuple[list[int], list[int]]:
            crops = np.stack([resize_and_crop(image, bundle.resize_short, bundle.crop)[0] for image in images])
            feeds = {INPUT_NAME: normalize(crops, baseline.mean, baseline.std)}
            logits = full_runner.run(feeds, [LOGITS_OUTPUT])[LOGITS_OUTPUT]
            return [int(c) for c in softmax(logits).argmax(axis=1)], [full_cost] * len(images)

        methods: dict[str, Classify] = {FULL_IMAGE: full_image}
        opened = opened_here.enter_context(Pipeline.from_bundle(bundle_dir, backend="onnxruntime", threads=threads))
        shared = (opened.bundle, opened.anchornet, opened.downstream)
        pipelines = {}
        for method in METHODS[1:]:
            options = dict(method.options)
            lsp = preset_params(str(options.pop("preset")))
            pipe = Pipeline(
                *shared,
                lsp=lsp,
                vote_min=opened.vote_min,
                branch_rule=opened.branch_rule,
                heatmap=opened.heatmap,
                anchor_vote=opened.anchor_vote,
                **options,
            )
            pipelines[method.name] = pipe
            methods[method.name] = _pipeline_method(pipe, patch_cost)
        yield methods, pipelines


def _pipeline_method(pipe: Pipeline, patch_cost: Mapping[int, int]) -> Classify:
    return lambda images: _answers(pipe.predict_batch(images), patch_cost)


def _answers(predictions: Sequence[Prediction], patch_cost: Mapping[int, int]) -> tuple[list[int], list[int]]:
    """Each prediction's class and the downstream multiply-adds of the patches classified for it (with early exit,
    those its last round ran past the confident one too)."""
    spent = [sum(patch_cost[size] for size in p.classified_sizes) for p in predictions]
    return [p.class_id for p in predictions], spent


def top1(
    methods: Mapping[str, Classify],
    own: str,
    own_pipeline: Pipeline,
    images: list[np.ndarray],
    labels: np.ndarray,
    batch: int = 16,
) -> tuple[dict, list[int]]:
    """{method: {"top1": %, "multiply_adds": mean per image}} over the images, and AnchorNet's decided class;
    and the branch (receptive field) AnchorNet chose for each image.

    The method named `own` (the bundle's preset) runs as `own_pipeline`'s predictions, which also give
    AnchorNet's row and the branches, so the pipeline runs once per batch for all three.
    """
    classes: dict[str, list[int]] = {name: [] for name in methods} | {ANCHORNET: []}
    spent: dict[str, list[int]] = {name: [] for name in methods}
    branches: list[int] = []
    patch_cost = bundle_costs(own_pipeline.bundle)[0]
    for start in tqdm(range(0, len(images), batch), desc=f"top-1 on {len(images)} images", unit="batch", mininterval=5):
        chunk = images[start : start + batch]
        predictions = own_pipeline.predict_batch(chunk)
        classes[ANCHORNET] += [p.anchor_class for p in predictions]
        branches += [p.branch for p in predictions]
        for name, classify in methods.items():
            predicted, cost = _answers(predictions, patch_cost) if name == own else classify(chunk)
            classes[name] += predicted
            spent[name] += cost
    rows = {
        name: {
            "top1": round(100.0 * float(np.mean(np.array(found) == labels)), 2),
            "multiply_adds": float(np.mean(spent[name])) if name in spent else None,
        }
        for name, found in classes.items()
    }
    return rows, branches


def representative(branches: Sequence[int], count: int) -> list[int]:
    """Positions of `count` images (all when fewer) whose branches come in the whole set's proportions.

    Each branch gets its share of `count`, rounded by largest remainder (ties: the smaller branch), and its
    images are taken evenly spread over the set's images of that branch; positions come back in set order.

    Example:
        >>> representative([63, 63, 95, 63, 111, 95, 63, 63], 4)  # shares 2.5, 1, 0.5: 63 takes the extra one
        [0, 2, 3, 7]
    """
    if count >= len(branches):
        return list(range(len(branches)))
    members: dict[int, list[int]] = {}
    for position, branch in enumerate(branches):
        members.setdefault(branch, []).append(position)
    shares = {branch: count * len(positions) / len(branches) for branch, positions in sorted(members.items())}
    quota = {branch: int(share) for branch, share in shares.items()}
    by_remainder = sorted(shares, key=lambda branch: -(shares[branch] - quota[branch]))  # stable: smaller branch first
    for branch in by_remainder[: count - sum(quota.values())]:
        quota[branch] += 1
    taken = []
    for branch, positions in members.items():
        spread = np.linspace(0, len(positions) - 1, quota[branch]).round().astype(int) if quota[branch] else []
        taken += [positions[index] for index in spread]
    return sorted(taken)


def timings(
    methods: Mapping[str, Classify],
    stages_of: Pipeline,
    images: list[np.ndarray],
    batch_sizes: Sequence[int],
    seconds: float,
    warmup: float,
) -> dict:
    """Per batch size: each method's wall time per batch (summary, ms), its paired ratio to the full image,
    the stage split (ms per batch, medians) of `stages_of`, the bundle's own preset, and its host share
    (median over rounds of the wall time outside the networks' runs, over the wall time)."""
    results = {}
    for size in batch_sizes:
        batches = [images[start : start + size] for start in range(0, len(images) - size + 1, size)]
        items = {name: _timed(classify) for name, classify in methods.items()} | {"stages": _stages(stages_of)}
        samples = interleaved(items, batches, warmup_s=warmup, seconds=seconds, iterations=None)
        full = samples[FULL_IMAGE]["wall"]
        own = samples["stages"]
        wall = np.asarray(own["wall"])
        host = wall - sum(np.asarray(own[key]) for key in MODEL_TIMES)
        results[str(size)] = {
            "methods": {
                name: {
                    "wall_ms": summarize(samples[name]["wall"]),
                    "ratio_to_full": paired_ratio(samples[name]["wall"], full),
                }
                for name in methods
            },
            "stages_ms": {key: float(np.median(values)) for key, values in own.items() if key != "wall"},
            "host_ms": float(np.median(host)),
            "host_share": float(np.median(host / wall)),
        }
    return results


def _timed(classify: Classify) -> Callable[[Sequence[np.ndarray]], dict]:
    return lambda batch: (classify(batch), {})[1]


def _stages(pipe: Pipeline) -> Callable[[Sequence[np.ndarray]], dict]:
    return lambda batch: dict(pipe.predict_batch(batch)[0].timings)


def table(result: Mapping) -> str:
    """The report on the terminal: per image set, one row per method, top-1 beside cost and time,
    then the stage split."""
    return "\n\n".join(
        _set_table(name, result["top1"][name], result["timing"][name], result["branches"][name], result["preset"])
        for name in result["top1"]
    )


def _set_table(name: str, top: Mapping, timing: Mapping, branches: Mapping, preset: str) -> str:
    sizes = list(timing)
    full_cost = top[FULL_IMAGE]["multiply_adds"]
    header = [
        f"{name} images",
        "top-1",
        "downstream M-MACs",
        "x full",
        *[f"b{size} ms/img" for size in sizes],
        *[f"b{size} x full" for size in sizes],
    ]
    rows = [header]
    for method, row in top.items():
        cost = row["multiply_adds"]
        cells = [method, f"{row['top1']:.1f} %"]
        cells += ["-", "-"] if cost is None else [f"{cost / 1e6:.0f}", f"{cost / full_cost:.2f}"]
        timed = [timing[size]["methods"].get(method) for size in sizes]
        cells += ["-" if t is None else f"{t['wall_ms']['p50'] / int(size):.2f}" for t, size in zip(timed, sizes)]
        cells += ["-" if t is None else f"{t['ratio_to_full']:.2f}" for t in timed]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for size in sizes:
        stages = timing[size]["stages_ms"]
        split = ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items() if stage != "total")
        lines.append(
            f"batch {size}, {preset} preset, ms per batch (p50): {split}; "
            f"host {timing[size]['host_ms']:.2f} ms = {100 * timing[size]['host_share']:.1f} % of the wall time"
        )
    per_branch = ", ".join(f"{size} px {n}/{branches['set'][size]}" for size, n in branches["timed"].items())
    lines.append(f"timed images per branch of the {preset} preset, of the set's: {per_branch}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pays", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")
    parser.add_argument(
        "--baselines",
        type=Path,
        default=DEFAULT_BASELINES,
        help="the full-image network, from python -m export.training.baselines (default: %(default)s)",
    )
    parser.add_argument("--images", type=int, default=TEST_IMAGES, help="test images per seed (default: %(default)s)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=f"also {len(FRESH_SEEDS)} x --images fresh test draws (seeds {FRESH_SEEDS})",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], metavar="N", help="default: 1 8")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="measuring time per batch size (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds per batch size (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per model (default: all cores)")
    parser.add_argument("--json", type=Path, help="write every number, with the environment and the weights' hashes")
    parser.add_argument("--note", help="free text stored in the JSON environment")
    args = parser.parse_args(argv)
    if args.images < 1 or any(b < 1 for b in args.batch_sizes) or args.seconds <= 0:
        parser.error("--images, --batch-sizes and --seconds must be positive")
    if max(args.batch_sizes) > (timed := min(TIMED_IMAGES, args.images)):
        parser.error(
            f"--batch-sizes: at most {timed}, the images timed per set (--images {args.images}, at most "
            f"{TIMED_IMAGES}); a larger batch would have nothing to time"
        )
    with ExitStack() as stack:
        try:
            methods, pipelines = stack.enter_context(open_methods(args.bundle, args.baselines, args.threads))
        except (AnchorEdgeError, OSError) as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        own_preset = next(iter(pipelines.values())).bundle.preset  # every pipeline shares the bundle opened above
        own = pipelines[own_preset]  # the bundle's own preset: its AnchorNet row, branches and stage split
        sets = {f"{args.images} test": (TEST_SEED,)} | (
            {f"{args.images * len(FRESH_SEEDS)} fresh": FRESH_SEEDS} if args.fresh else {}
        )
        result = {
            "benchmark": "anchor-edge: does it pay (top-1, downstream multiply-adds, time; same bundle, same images)",
            "environment": report.environment(args.note),
            "bundle": _bundle_info(own),
            "preset": own.bundle.preset,
            "top1": {},
            "timing": {},
            "branches": {},  # images per branch of the bundle's own preset: the whole set's and the timed ones'
        }
        for name, seeds in sets.items():
            images, labels = test_images(seeds, args.images)
            result["top1"][name], branches = top1(methods, own_preset, own, images, labels)
            timed = representative(branches, TIMED_IMAGES)
            result["timing"][name] = timings(
                methods, own, [images[i] for i in timed], args.batch_sizes, args.seconds, args.warmup
            )
            result["branches"][name] = {"set": _counts(branches), "timed": _counts([branches[i] for i in timed])}
    print(table(result))
    if args.json:
        report.write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _counts(branches: Sequence[int]) -> dict[str, int]:
    """Images per branch, by receptive field."""
    return {str(branch): branches.count(branch) for branch in sorted(set(branches))}


def _bundle_info(pipe: Pipeline) -> dict:
    bundle = pipe.bundle
    return {
        "path": str(bundle.root),
        "downstream": bundle.downstream.name,
        "trained": bundle.trained,
        "weights": {"anchornet": bundle.anchornet.weights, "downstream": bundle.downstream.weights},
        "sha256": bundle.model_sha256s,
        "multiply_adds": {
            "anchornet": int(bundle.anchornet.multiply_adds),
            "downstream_full_image": bundle_costs(bundle)[1],
        },
    }


if __name__ == "__main__":
    sys.exit(main())
