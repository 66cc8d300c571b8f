"""`anchor-edge serve`: serve a bundle over HTTP on Ray Serve, batching requests.

It starts a local Ray cluster on loopback unless `--address` names one to
join, and stops what it started on the way out (Ctrl-C and SIGTERM included).

The API key comes from an environment variable (ANCHOR_EDGE_API_KEY, or the
one --api-key-env names), never from a flag that `ps` would show. A --host
beyond loopback without a key, or an --insecure that does not apply, is
refused with exit code 2 before Ray starts or anything listens.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from anchor_edge.cli.failure import one_line
from anchor_edge.cli.options import (
    add_backend_options,
    add_bundle_option,
    add_common_flags,
    add_ray_options,
    backend_keywords,
    non_negative,
    positive_int,
)
from anchor_edge.errors import InputError
from anchor_edge.scale.serve_access import DEFAULT_KEY_VARIABLE, AccessKey, exposure_problem, read_key

log = logging.getLogger("anchor_edge")


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve a bundle over HTTP on Ray Serve, batching requests")
    add_bundle_option(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s); beyond loopback it needs an API key or --insecure",
    )
    serve.add_argument("--port", type=positive_int, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--max-batch-size",
        "--max-batch",
        type=positive_int,
        default=8,
        metavar="B",
        dest="max_batch_size",
        help="most requests per predict_batch (default: %(default)s)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=non_negative,
        default=5.0,
        metavar="W",
        help="longest wait for a batch to fill after its first request (default: %(default)s)",
    )
    serve.add_argument(
        "--max-body-mb",
        type=body_bytes,
        default=20 * 2**20,
        dest="max_body_bytes",
        metavar="MB",
        help="largest request body, in MiB (default: 20)",
    )
    serve.add_argument(
        "--max-queued",
        type=positive_int,
        default=16,
        metavar="N",
        help="requests per replica that may wait beyond those it holds; more get 503 + Retry-After "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--timeout-s",
        type=positive,
        default=30.0,
        metavar="S",
        help="a prediction's deadline; past it the client gets 504 and the work is dropped (default: %(default)s)",
    )
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=f"environment variable holding the API key clients send as 'Authorization: Bearer KEY' "
        f"(default: {DEFAULT_KEY_VARIABLE}; a server without a key is open to anyone who reaches it)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve beyond loopback without an API key, on purpose",
    )
    add_ray_options(serve, member="replica")
    add_backend_options(serve, threads=False)
    add_common_flags(serve)
    serve.set_defaults(handler=run, subparser=serve)


def run(args: argparse.Namespace) -> int:
    from anchor_edge.scale import cluster
    from anchor_edge.scale.serve import ServeOptions, start_server, stop_server

    variable = args.api_key_env or DEFAULT_KEY_VARIABLE
    try:
        key = read_key(variable, named=args.api_key_env is not None)
    except InputError as error:
        return refuse(str(error))
    problem = exposure_problem(args.host, has_key=key is not None, insecure=args.insecure, variable=variable)
    if problem:
        return refuse(problem)
    os.environ.pop(variable, None)  # Ray's processes inherit this environment; only the key's digest goes on
    keywords = backend_keywords(args)
    backend = keywords.pop("backend")
    options = ServeOptions(
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        threads_per_replica=args.threads_per_replica,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_queued=args.max_queued,
        timeout_s=args.timeout_s,
        access=AccessKey.from_key(key),
        insecure=args.insecure,
        key_variable=variable,
        gpus_per_replica=args.gpus_per_replica,
        backend=backend,
        backend_keywords=keywords,
    )
    connected = cluster.start(args.address)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the server as Ctrl-C does
    try:
        url = start_server(str(args.bundle), options)
        print(
            f"serving {args.bundle} at {url}: POST {url}/predict (an image file as the body), GET {url}/health, "
            f"/ready, /metrics; {'API key required' if key else 'no API key'}; Ctrl-C stops",
            flush=True,
        )
        wait_for_interrupt()
    except KeyboardInterrupt:
        log.info("stopping the server")
    finally:
        stop_server()
        cluster.stop(connected)
    return 0


def refuse(reason: str) -> int:
    """A setting that must not start a server: one line on stderr and exit code 2, before anything listens."""
    print(f"anchor-edge serve: {one_line(reason)}", file=sys.stderr)
    return 2


def positive(text: str) -> float:
    """A finite number > 0 (deadlines)."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"needs a number > 0, got {text!r}")
    return value


def body_bytes(text: str) -> int:
    """--max-body-mb: MiB > 0 as whole bytes, at least one."""
    size = int(positive(text) * 2**20)
    if size < 1:
        raise argparse.ArgumentTypeError(f"needs at least one byte (about 1e-6 MiB), got {text!r}")
    return size


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


#: Longest wait between two looks at a pending Ctrl-C or SIGTERM.
INTERRUPT_POLL_SECONDS = 0.5


def wait_for_interrupt() -> None:
    """Sleep until Ctrl-C or SIGTERM raises KeyboardInterrupt, in short sleeps.

    The kernel may hand the signal to any of Ray's threads; Python then runs
    its handler in the main thread only when that thread wakes, so one long
    sleep could outlast Ctrl-C. A server started as a shell's background job
    ignores SIGINT, as the shell asks; SIGTERM (`kill PID`) always stops it.
    """
    while True:
        time.sleep(INTERRUPT_POLL_SECONDS)
