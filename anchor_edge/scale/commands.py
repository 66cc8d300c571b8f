"""`anchor-edge batch` and `anchor-edge serve`: the command-line doors to the batch job and the server.

Both start a local Ray cluster on loopback unless `--address` names one to
join, and stop what they started on the way out (Ctrl-C included).
"""
from __future__ import annotations

import argparse
import logging
import signal
import time

from anchor_edge.scale import cluster

log = logging.getLogger("anchor_edge")


def run_batch_command(args: argparse.Namespace) -> int:
    from anchor_edge.scale.batch import quiet_ray_data, run_batch

    connected = cluster.start(args.address)
    try:
        quiet_ray_data()
        report = run_batch(
            args.bundle, args.input, args.output, actors=args.actors, threads_per_actor=args.threads_per_actor,
            batch_size=args.batch_size, gpus_per_actor=args.gpus_per_actor, backend=args.backend,
        )
    finally:
        cluster.stop(connected)
    print(
        f"{report.written} rows written to {report.output} ({report.errors} errors) in {report.seconds:.1f} s, "
        f"{report.images_per_second:.1f} images/s; {report.skipped} of {report.inputs} images were done before"
    )
    return 0


def run_serve_command(args: argparse.Namespace) -> int:
    from anchor_edge.scale.serve import ServeOptions, start_server, stop_server

    options = ServeOptions(
        host=args.host, port=args.port, replicas=args.replicas, threads_per_replica=args.threads_per_replica,
        max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, max_body_bytes=int(args.max_body_mb * 2**20),
        gpus_per_replica=args.gpus_per_replica, backend=args.backend,
    )
    connected = cluster.start(args.address)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the server as Ctrl-C does
    try:
        url = start_server(str(args.bundle), options)
        print(f"serving {args.bundle} at {url}: POST {url}/predict (an image file as the body), GET {url}/health; "
              "Ctrl-C stops", flush=True)
        wait_for_interrupt()
    except KeyboardInterrupt:
        log.info("stopping the server")
    finally:
        stop_server()
        cluster.stop(connected)
    return 0


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
