"""Option groups and argument types shared by the subcommands, so one flag means one thing everywhere.

Every type turns a bad value into argparse's usage error (exit 2) with the
value that was given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anchor_edge.backends import BACKENDS
from anchor_edge.backends.options import OPENVINO_PRECISIONS
from anchor_edge.bundle.choices import BranchRule, Heatmap
from anchor_edge.errors import InputError
from anchor_edge.method.early_exit import check_threshold

DEFAULT_BUNDLE = Path("bundles/default")


def positive_int(text: str) -> int:
    """An integer >= 1 (frames, batch sizes, ports, pool sizes, threads)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"needs an integer >= 1, got {text!r}")
    return int(text)


def non_negative(text: str) -> float:
    """A finite number >= 0 (GPUs per member, waits, body sizes)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"needs a number >= 0, got {text!r}")
    return value


def share(text: str) -> float:
    """A number in [0, 1] (agreement shares)."""
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"needs a number in [0, 1], got {text!r}")
    return value


def threshold(text: str) -> float | None:
    """--early-exit: a number >= 0."""
    try:
        return check_threshold(float(text))
    except (ValueError, InputError) as error:
        raise argparse.ArgumentTypeError(f"needs a number >= 0, got {text!r}") from error


def providers(text: str) -> str | list[str]:
    """--providers: "auto", or names separated by commas."""
    return "auto" if text == "auto" else [name.strip() for name in text.split(",") if name.strip()]


def add_decision_options(
    parser: argparse.ArgumentParser, default: str = "the bundle's", vote_default: str = "the bundle's"
) -> None:
    """--branch-rule and --heatmap: which branch's maps localize the class, and which map of it LSP reads
    (anchor_edge.bundle.choices.BranchRule, Heatmap); --anchor-vote: how much AnchorNet's class weighs in the image's
    (anchor_edge.method.anchor_vote). `default` and `vote_default` say what not giving them means."""
    parser.add_argument(
        "--branch-rule",
        choices=[rule.value for rule in BranchRule],
        help="confident: the most confident branch voting for the class (the paper); widest: always B111 "
        f"(an AnchorNet trained without sizes) (default: {default})",
    )
    parser.add_argument(
        "--heatmap",
        choices=[heatmap.value for heatmap in Heatmap],
        help="the map of that branch LSP reads, class: the decided class's (the paper); max: the hottest class's "
        f"at each location (an AnchorNet trained without boxes) (default: {default})",
    )
    parser.add_argument(
        "--anchor-vote",
        type=non_negative,
        metavar="W",
        help="weight of AnchorNet's decided-branch class probabilities added to the patches' mean softmax "
        f"(0: the paper's rule, the patches alone) (default: {vote_default})",
    )


def decision_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """`Pipeline.from_bundle`'s keywords for the flags `add_decision_options` adds (None: the bundle's)."""
    return {"branch_rule": args.branch_rule, "heatmap": args.heatmap, "anchor_vote": args.anchor_vote}


def add_bundle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")


def add_backend_options(parser: argparse.ArgumentParser, *, threads: bool = True) -> None:
    """--backend and every backend's options, the same for each subcommand that opens a bundle.

    The options default to None (not given), so one given to a backend that
    does not take it fails (exit 1, naming the options each backend takes)
    instead of being dropped. The Ray pools (batch, serve) set threads per
    member with --threads-per-actor / --threads-per-replica instead of --threads.
    """
    group = parser.add_argument_group("backend (an option the chosen backend does not take is an error)")
    group.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: %(default)s)")
    group.add_argument(
        "--providers",
        type=providers,
        metavar="P[,P]",
        help="ONNX Runtime providers: cpu, cuda, tensorrt, openvino (priority order) or auto (default: cpu)",
    )
    if threads:
        group.add_argument(
            "--threads",
            type=positive_int,
            metavar="T",
            help="threads per model, ONNX Runtime or OpenVINO (default: the backend's)",
        )
    group.add_argument("--device", help="OpenVINO device: CPU, GPU, NPU or AUTO (default: CPU)")
    group.add_argument("--inference-precision", choices=OPENVINO_PRECISIONS, help="OpenVINO precision (default: f32)")


def backend_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """`Pipeline.from_bundle`'s backend= and the backend options given on the command line."""
    given = {name: getattr(args, name, None) for name in ("threads", "providers", "device", "inference_precision")}
    return {"backend": args.backend, **{name: value for name, value in given.items() if value is not None}}


def add_ray_options(parser: argparse.ArgumentParser, *, member: str) -> None:
    """The Ray pool of pipelines (--{member}s, each one's threads and GPUs) and the cluster."""
    parser.add_argument(
        f"--{member}s",
        type=positive_int,
        default=1,
        metavar="N",
        help=f"pipelines ({member}s) running at once (default: %(default)s)",
    )
    parser.add_argument(
        f"--threads-per-{member}",
        type=positive_int,
        default=1,
        metavar="T",
        help=f"ONNX Runtime threads of each {member} (default: %(default)s)",
    )
    parser.add_argument(
        f"--gpus-per-{member}",
        type=non_negative,
        default=0.0,
        metavar="G",
        help=f"GPUs each {member} reserves (default: 0)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="join a Ray cluster: auto (one started with `ray start` here) or HEAD:PORT; "
        "default: start a local cluster on 127.0.0.1",
    )


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """-v and --debug, unless a reused script parser defines them already."""
    for flags, help_text in ((("-v", "--verbose"), "info logs"), (("--debug",), "debug logs and tracebacks")):
        try:
            parser.add_argument(*flags, action="store_true", help=help_text)
        except argparse.ArgumentError:
            pass
