"""Latency and throughput of the patch pipeline against the full image, measured side by side.

    python benchmarks/latency.py                                  # bundles/default, batch 1 and 8
    python benchmarks/latency.py --bundle bundles/resnet50 --json out/latency.json --png out/latency.png
    python benchmarks/latency.py --bundle bundles/int8 --bundle bundles/fp32   # two bundles, interleaved
    python benchmarks/latency.py --quick                          # seconds, for smoke tests
    python benchmarks/latency.py --video clip.mp4                 # stream figures: frames/s, latency p50/p99

Per batch size, every item runs once per round (pipeline, full image,
resized, for each bundle), so drift on a shared machine hits all alike; see
benchmarks/measure.py. With several bundles, each one's pipeline is also
compared with the first bundle's round by round (e.g. INT8 against FP32).
Exit codes: 0 done, 1 the bundle or backend failed (one line; --debug for
the traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `anchor_edge` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anchor_edge import Pipeline  # noqa: E402
from anchor_edge.cli.options import add_backend_options, backend_keywords  # noqa: E402
from anchor_edge.errors import AnchorEdgeError  # noqa: E402
from anchor_edge.method.budget import bundle_costs, savings_note  # noqa: E402
from anchor_edge.method.lsp import PRESETS  # noqa: E402
from benchmarks import items, report  # noqa: E402
from benchmarks.costs import cost_accounting  # noqa: E402
from benchmarks.images import default_images, load_images  # noqa: E402
from benchmarks.measure import interleaved  # noqa: E402
from benchmarks.stream import stream_figures, stream_table  # noqa: E402

DEFAULT_BUNDLE = Path("bundles/default")
DEFAULT_TIMING = {"warmup": 3.0, "seconds": 20.0}
QUICK = {"warmup": 0.2, "seconds": 0.5}
#: What --video leaves unused: it streams the whole file once per batch size, with its own warm-up pass.
NOT_WITH_VIDEO = ("seconds", "iterations", "warmup", "quick", "png")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The benchmark's flags; `anchor-edge bench` reuses this parser."""
    parser = parser or argparse.ArgumentParser(
        prog="python benchmarks/latency.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        metavar="DIR",
        help=f"bundle directory; repeat to compare bundles in one run (default: {DEFAULT_BUNDLE})",
    )
    add_backend_options(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="LSP preset (default: each bundle's own)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], metavar="N", help="default: 1 8")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds", type=float, help=f"measuring time per batch size (default: {DEFAULT_TIMING['seconds']})"
    )
    budget.add_argument(
        "--iterations", type=int, metavar="N", help="measured rounds per batch size instead of --seconds"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        metavar="SECONDS",
        help=f"warm-up per batch size (default: {DEFAULT_TIMING['warmup']})",
    )
    parser.add_argument(
        "--images",
        metavar="digits|photos|DIR",
        help="what to time: the digits benchmark's test images, the real photos bundled with "
        "scikit-image and scikit-learn, or a folder (default: digits for a digits bundle, else photos)",
    )
    parser.add_argument(
        "--video",
        type=Path,
        metavar="FILE",
        help="instead of photos: stream figures over this video (frames/s, latency p50/p99) per batch size",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write every number of the table, with the environment"
    )
    parser.add_argument("--png", type=Path, metavar="PATH", help="write the per-stage chart (needs matplotlib)")
    parser.add_argument(
        "--note", help="free text stored in the JSON environment, e.g. 'background training job on both cores'"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few rounds in about a second per batch size (smoke test)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def run(args: argparse.Namespace) -> int:
    """Benchmark as `args` says; returns the exit code."""
    bundles = args.bundle or [DEFAULT_BUNDLE]
    ignored = [f"--{name}" for name in NOT_WITH_VIDEO if getattr(args, name) not in (None, False)]
    if args.video is not None and ignored:
        print(
            f"usage error: {', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply with --video, "
            "which streams the whole file once per batch size after one warm-up pass (and draws no per-stage chart)",
            file=sys.stderr,
        )
        return 2
    timing = QUICK if args.quick else DEFAULT_TIMING
    warmup = timing["warmup"] if args.warmup is None else args.warmup
    seconds = timing["seconds"] if args.seconds is None else args.seconds
    if any(b < 1 for b in args.batch_sizes) or (args.iterations is not None and args.iterations < 2) or seconds <= 0:
        print("usage error: batch sizes must be >= 1, --iterations >= 2 and --seconds > 0", file=sys.stderr)
        return 2
    try:
        pipelines = open_pipelines(bundles, args)
        photos = load_images(args.images or default_images(next(iter(pipelines.values())).bundle.class_names))
    except (AnchorEdgeError, OSError) as error:
        if args.debug:
            raise
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    env = report.environment(args.note)
    try:
        chosen = {label: items.choices(pipe, [image for _, image in photos]) for label, pipe in pipelines.items()}
        result = {
            "benchmark": "anchor-edge latency: patch pipeline vs full image",
            "environment": env,
            "settings": {
                "backend": ", ".join(sorted({pipe.anchornet.describe() for pipe in pipelines.values()})),
                "batch_sizes": args.batch_sizes,
                "warmup_s": None if args.video else warmup,
                "seconds": None if args.iterations or args.video else seconds,
                "iterations": args.iterations,
                "threads": args.threads,
                "preset": args.preset,
                "images": [name for name, _ in photos],
                "units": "milliseconds per batch unless named otherwise",
            },
            "bundles": {label: bundle_info(pipe, chosen[label], args.preset) for label, pipe in pipelines.items()},
            "results": [],
        }
        for label, info in result["bundles"].items():
            print(report.bundle_line(label, info))
            print(report.cost_table(label, info["costs"]))
        if args.video is not None:
            result["stream"] = {"video": str(args.video), "bundles": {}}
            for label, pipe in pipelines.items():
                figures = stream_figures(pipe, args.video, args.batch_sizes)
                result["stream"]["bundles"][label] = figures
                print(stream_table(label, figures))
        for batch_size in args.batch_sizes if args.video is None else ():
            measured = {}
            for label, pipe in pipelines.items():
                measured[f"{label}:{report.PIPELINE}"] = items.pipeline_item(pipe)
                measured[f"{label}:{report.FULL}"] = items.full_image_item(pipe)
                measured[f"{label}:{report.RESIZED}"] = items.resized_item(pipe, chosen[label])
            batches = [
                [(i % len(photos), photos[i % len(photos)][1]) for i in range(start, start + batch_size)]
                for start in range(0, len(photos) * batch_size, batch_size)
            ]
            samples = interleaved(measured, batches, warmup_s=warmup, seconds=seconds, iterations=args.iterations)
            batch = report.batch_result(samples, list(pipelines), batch_size)
            result["results"].append(batch)
            print(report.table(batch))
    except (AnchorEdgeError, OSError) as error:
        if args.debug:
            raise
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        for pipe in pipelines.values():
            pipe.close()
    env["load_average_end"] = report.environment(None)["load_average_1_5_15"]
    if args.json:
        report.write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.png:
        report.write_chart(args.png, result)
        print(f"wrote {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    return run(args)


def open_pipelines(bundles: list[Path], args: argparse.Namespace) -> dict[str, Pipeline]:
    """One Pipeline per bundle, labelled by folder name (made unique)."""
    pipelines: dict[str, Pipeline] = {}
    for path in bundles:
        label = path.name or str(path)
        while label in pipelines:
            label += "'"
        pipelines[label] = Pipeline.from_bundle(path, preset=args.preset, **backend_keywords(args))
        bundle_costs(pipelines[label].bundle)  # the report counts multiply-adds: a bundle without them is refused now
    return pipelines


def bundle_info(pipe: Pipeline, chosen: list[items.Choice], preset: str | None) -> dict:
    bundle = pipe.bundle
    return {
        "path": str(bundle.root),
        "backend": pipe.anchornet.describe(),
        "downstream": bundle.downstream.name,
        "trained": bundle.trained,
        "anchornet_weights": bundle.anchornet.weights,
        "downstream_weights": bundle.downstream.weights,
        "savings": savings_note(int(bundle.anchornet.multiply_adds), bundle_costs(bundle)[1])[1],
        "num_classes": bundle.num_classes,
        "preset": preset or bundle.preset,
        "precision": {"anchornet": bundle.anchornet.precision.value, "downstream": bundle.downstream.precision.value},
        "sha256": bundle.model_sha256s,
        "costs": cost_accounting(bundle, chosen),
    }


if __name__ == "__main__":
    sys.exit(main())
