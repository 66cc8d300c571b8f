"""Export AnchorNet and a downstream network to a bundle (ONNX, then TensorRT engines where possible).

    python export/to_trt.py                              # the default bundle, bundles/default
    python export/to_trt.py --downstream resnet50 --out bundles/resnet50
    python export/to_trt.py --anchornet anchornet.pt --downstream resnet50:resnet50.pt --num-classes 10

Exit codes: 0 success, 1 export failure (one line; --debug for the
traceback), 2 usage error.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anchor_edge.backends.trt_environment import tensorrt_available  # noqa: E402
from anchor_edge.errors import AnchorEdgeError  # noqa: E402
from export.build_bundle import ExportOptions, export_bundle  # noqa: E402
from export.engine_build import DEFAULT_TIMING_CACHE, build_engines, record_engines  # noqa: E402

DEFAULT_BUNDLE = Path("bundles/default")
log = logging.getLogger("anchor_edge")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The export flags; `anchor-edge export` reuses this parser."""
    parser = parser or argparse.ArgumentParser(prog="python export/to_trt.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchornet", type=Path, metavar="CKPT", help="AnchorNet checkpoint (default: untrained, seeded)")
    parser.add_argument(
        "--downstream", default="efficientnet_lite0", metavar="SPEC",
        help="NAME[:CKPT] (torchvision name or efficientnet_lite0) or MODULE:CALLABLE[:CKPT] (default: %(default)s)",
    )
    parser.add_argument("--num-classes", type=int, metavar="N", help="classes (default: the checkpoint's, else 1000)")
    parser.add_argument("--pooling", choices=["gap", "attention"], help="AnchorNet's inference pooling (default: gap)")
    parser.add_argument("--preset", choices=["visual", "accurate"], default="accurate", help="LSP preset recorded in the bundle")
    parser.add_argument("--vote-min", type=int, choices=[1, 2, 3], default=2, help="branch votes for a class (SPEC 3)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs ONNX-vs-PyTorch difference (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")
    engines = parser.add_argument_group("TensorRT engines (built when tensorrt and a CUDA GPU are present)")
    engines.add_argument("--max-batch", type=int, default=8, help="most images per engine call (default: %(default)s)")
    engines.add_argument("--max-patches", type=int, default=32, help="most patches of one size per call (default: %(default)s)")
    engines.add_argument("--workspace-gib", type=float, default=2.0, help="TensorRT workspace limit (default: %(default)s)")
    engines.add_argument("--timing-cache", type=Path, default=DEFAULT_TIMING_CACHE, help="reused across builds (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def run(args: argparse.Namespace) -> int:
    """Export as `args` says; returns the exit code."""
    options = ExportOptions(
        out=args.out, anchornet=args.anchornet, downstream=args.downstream, num_classes=args.num_classes,
        pooling=args.pooling, preset=args.preset, vote_min=args.vote_min, tolerance=args.tolerance,
    )
    try:
        out = export_bundle(options)
        print(f"wrote {out / 'bundle.json'}")
        available, reason = tensorrt_available()
        if not available:
            print(f"TensorRT engines not built: {reason}; the ONNX bundle runs on ONNX Runtime")
            return 0
        records = build_engines(
            out, max_batch=args.max_batch, max_patches=args.max_patches,
            workspace_bytes=int(args.workspace_gib * (1 << 30)), timing_cache=args.timing_cache,
        )
        record_engines(out, records)
        print(f"built TensorRT engines {', '.join(r['file'] for r in records.values())} in {out}")
    except (AnchorEdgeError, ValueError, FileNotFoundError, TypeError, RuntimeError, OSError) as error:
        if args.debug:
            raise
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
