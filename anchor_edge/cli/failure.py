"""How a subcommand reports a failure: one line on stderr, the traceback only when asked (--debug)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("anchor_edge")


def report_failure(error: BaseException, debug: bool) -> int:
    """Report `error` as one line on stderr (the traceback too with --debug); returns exit code 1."""
    if debug:
        log.exception("failed")
    print(f"anchor-edge: {one_line(str(error))}", file=sys.stderr)
    return 1


def one_line(text: str) -> str:
    return " ".join(text.split())
