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

from export.build_bundle import ExportOptions, export_bundle  # noqa: E402

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
    except (ValueError, FileNotFoundError, TypeError, RuntimeError, OSError) as error:
        if args.debug:
            raise
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'bundle.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
