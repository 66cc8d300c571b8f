"""`anchor-edge batch`: classify a large set of image files on Ray, results to Parquet.

It starts a local Ray cluster on loopback unless `--address` names one to
join, and stops what it started on the way out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anchor_edge.cli.options import (
    add_backend_options,
    add_bundle_option,
    add_common_flags,
    add_ray_options,
    backend_keywords,
    positive_int,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser("batch", help="classify a large set of image files on Ray, results to Parquet")
    add_bundle_option(batch)
    batch.add_argument(
        "--input", required=True, metavar="PATH_OR_GLOB", help="an image file, a folder (recursive) or a glob"
    )
    batch.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="DIR",
        help="results folder (Parquet parts); images already in it are skipped",
    )
    batch.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        metavar="B",
        help="images per predict_batch (default: %(default)s)",
    )
    add_ray_options(batch, member="actor")
    add_backend_options(batch, threads=False)
    add_common_flags(batch)
    batch.set_defaults(handler=run, subparser=batch)


def run(args: argparse.Namespace) -> int:
    from anchor_edge.scale import cluster
    from anchor_edge.scale.batch import quiet_ray_data, run_batch

    keywords = backend_keywords(args)
    backend = keywords.pop("backend")
    connected = cluster.start(args.address)
    try:
        quiet_ray_data()
        report = run_batch(
            args.bundle,
            args.input,
            args.output,
            actors=args.actors,
            threads_per_actor=args.threads_per_actor,
            batch_size=args.batch_size,
            gpus_per_actor=args.gpus_per_actor,
            backend=backend,
            backend_keywords=keywords,
        )
    finally:
        cluster.stop(connected)
    print(
        f"{report.written} rows written to {report.output} ({report.errors} errors) in {report.seconds:.1f} s, "
        f"{report.images_per_second:.1f} images/s; {report.skipped} of {report.inputs} images were done before"
    )
    return 0
