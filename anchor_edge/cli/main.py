"""`anchor-edge`'s entry point: parse, set up logging, run the subcommand, turn its failure into an exit code.

Exit codes: 0 success, 2 usage error (argparse), 1 failure, with a one-line
reason on stderr (`--debug` shows the traceback and debug logs; `-v` info
logs). The library logs through the "anchor_edge" logger, quiet by default.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from anchor_edge.cli.checkout import CHECKOUT_COMMANDS, run_checkout_command
from anchor_edge.cli.failure import report_failure
from anchor_edge.cli.parser import build_parser
from anchor_edge.errors import AnchorEdgeError

log = logging.getLogger("anchor_edge")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.command in CHECKOUT_COMMANDS:
        return run_checkout_command(args.command, rest)
    if rest:
        args.subparser.error(f"unrecognized arguments: {' '.join(rest)}")
    configure_logging(args)
    try:
        return args.handler(args)
    except (AnchorEdgeError, OSError) as error:
        return report_failure(error, args.debug)


def configure_logging(args: argparse.Namespace) -> None:
    """Quiet by default: warnings only; -v info, --debug everything, on stderr."""
    level = logging.DEBUG if args.debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    for previous in [h for h in log.handlers if isinstance(h, _CommandLineHandler)]:
        log.removeHandler(previous)  # main() called again in one process: one handler, on today's stderr
    handler = _CommandLineHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)


class _CommandLineHandler(logging.StreamHandler):
    """The stderr handler the command adds to the "anchor_edge" logger."""
