"""`anchor-edge verify BUNDLE`: rerun the bundle's check set on a backend and compare with FP32."""

from __future__ import annotations

import argparse
from pathlib import Path

from anchor_edge.bundle.check_set import DEFAULT_MIN_AGREEMENT, verify_bundle
from anchor_edge.bundle.schema import VerifyResult
from anchor_edge.cli.options import add_backend_options, add_common_flags, backend_keywords, share


def add_parser(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser("verify", help="rerun the bundle's check set on a backend and compare with FP32")
    verify.add_argument("bundle", type=Path, metavar="BUNDLE")
    add_backend_options(verify)
    verify.add_argument(
        "--min-agreement",
        type=share,
        default=DEFAULT_MIN_AGREEMENT,
        help="least top-1 agreement (default: %(default)s)",
    )
    add_common_flags(verify)
    verify.set_defaults(handler=run, subparser=verify)


def run(args: argparse.Namespace) -> int:
    result = verify_bundle(args.bundle, min_agreement=args.min_agreement, **backend_keywords(args))
    print(describe(result))
    print(f"recorded in {args.bundle / 'bundle.json'} (verified)")
    return 0 if result.passed else 1


def describe(result: VerifyResult) -> str:
    """One line: agreement and differences, and whether the floor holds."""
    verdict = "passed" if result.passed else f"FAILED (below {result.min_agreement:.0%})"
    diffs = ", ".join(f"{name} {value:.2e}" for name, value in result.max_abs_diff.items())
    return (
        f"{result.backend}: top-1 agreement with FP32 {result.top1_agreement:.1%} on {result.images} images; "
        f"max |difference| {diffs}; {verdict}"
    )
