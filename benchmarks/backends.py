"""Backends side by side: ONNX Runtime CPU, OpenVINO f32 and bf16 (where the CPU has it), and INT8, with agreement.

    python -m benchmarks.backends --bundle bundles/default --int8 bundles/default-int8 --json backends.json

Every setting runs the whole Pipeline on the same photos, interleaved round
by round (benchmarks/measure.py), so drift on a shared machine hits all
alike; beside each one's speed stands its `anchor-edge verify` agreement
with the FP32 answers stored in the bundle (anchor_edge/bundle/check_set.py),
because a faster setting that changes the answers is not the same product. Ratios
are against ONNX Runtime CPU FP32, paired within rounds. bf16 is measured
only where OpenVINO reports it for this CPU (detected, not assumed).

Exit codes: 0 done, 1 a bundle or backend failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from anchor_edge import Pipeline
from anchor_edge.backends.openvino import cpu_supports, openvino_devices
from anchor_edge.bundle.check_set import verify_bundle
from anchor_edge.cli.options import positive_int
from anchor_edge.errors import AnchorEdgeError
from benchmarks import report
from benchmarks.measure import interleaved, paired_ratio, summarize

REFERENCE = "onnxruntime cpu fp32"


def settings(bundle: Path, int8: Path | None) -> dict[str, tuple[Path, dict[str, Any]]]:
    """{label: (bundle, Pipeline.from_bundle options)} for every setting this machine can run."""
    chosen: dict[str, tuple[Path, dict[str, Any]]] = {REFERENCE: (bundle, {"backend": "onnxruntime"})}
    if openvino_devices():
        chosen["openvino CPU f32"] = (bundle, {"backend": "openvino", "inference_precision": "f32"})
        if cpu_supports("bf16"):
            chosen["openvino CPU bf16"] = (bundle, {"backend": "openvino", "inference_precision": "bf16"})
    if int8 is not None:
        chosen["onnxruntime cpu int8"] = (int8, {"backend": "onnxruntime"})
    return chosen


def run(args: argparse.Namespace) -> int:
    try:
        from export.data.photos import real_photos

        photos = [image for _, image in real_photos()]
        chosen = settings(args.bundle, args.int8)
        pipelines = {
            label: Pipeline.from_bundle(path, threads=args.threads, **options)
            for label, (path, options) in chosen.items()
        }
    except (AnchorEdgeError, OSError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    result: dict[str, Any] = {
        "benchmark": "anchor-edge backends side by side",
        "environment": report.environment(args.note),
        "bundle": str(args.bundle),
        "int8_bundle": None if args.int8 is None else str(args.int8),
        "settings": {},
        "results": [],
    }
    try:
        for label, (path, options) in chosen.items():
            verified = verify_bundle(path, record=False, threads=args.threads, **options)
            result["settings"][label] = {
                "backend": pipelines[label].anchornet.describe(),
                "bundle": str(path),
                "top1_agreement": verified.top1_agreement,
                "max_abs_diff": verified.max_abs_diff,
            }
        for batch_size in args.batch_sizes:
            batches = [[photos[(start + i) % len(photos)] for i in range(batch_size)] for start in range(len(photos))]
            items = {label: _item(pipe) for label, pipe in pipelines.items()}
            samples = interleaved(items, batches, warmup_s=args.warmup, seconds=args.seconds, iterations=None)
            walls = {label: s["wall"] for label, s in samples.items()}
            result["results"].append(
                {
                    "batch_size": batch_size,
                    "wall_ms": {label: summarize(wall) for label, wall in walls.items()},
                    "over_reference_paired": {
                        label: paired_ratio(wall, walls[REFERENCE]) for label, wall in walls.items()
                    },
                }
            )
    except AnchorEdgeError as error:  # e.g. an --int8 bundle exported before bundles carried a check set
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        for pipe in pipelines.values():
            pipe.close()
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _item(pipe: Pipeline):
    def call(batch):
        pipe.predict_batch(batch)
        return {}

    return call


def table(result: dict) -> str:
    """Speed (p50 ms per batch, and against ONNX Runtime CPU FP32) with agreement, one row per setting."""
    lines = [
        f"{'setting':<24} {'backend':<24} {'agreement':>9}  "
        + "  ".join(f"{'b' + str(r['batch_size']) + ' p50 ms':>10} {'x ort':>6}" for r in result["results"])
    ]
    for label, info in result["settings"].items():
        cells = "  ".join(
            f"{r['wall_ms'][label]['p50']:>10.1f} {r['over_reference_paired'][label]:>6.2f}" for r in result["results"]
        )
        lines.append(f"{label:<24} {info['backend']:<24} {info['top1_agreement']:>9.1%}  {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", type=Path, default=Path("bundles/default"), help="the FP32 bundle (default: %(default)s)"
    )
    parser.add_argument(
        "--int8", type=Path, help="an INT8 export of it (python export/to_trt.py --precision downstream=int8)"
    )
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measuring time per batch size (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--threads", type=int, help="threads per model (default: each backend's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--note")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
