"""The `anchor-edge` parser: one subparser per subcommand module, each built from the shared option groups.

    anchor-edge predict photo.jpg [--bundle bundles/default] [--json] [--save-vis DIR] [--early-exit 0.9] [--budget 0.5]
    anchor-edge predict clip.mp4 | 0 | rtsp://... [--save-vis out.mp4] [--json] [--every N] [--batch-size N]
    anchor-edge export [the options of python export/to_trt.py]
    anchor-edge bench [the options of python benchmarks/latency.py]
    anchor-edge doctor [--bundle bundles/default]
    anchor-edge verify bundles/default [--backend openvino --inference-precision bf16]
    anchor-edge eval bundles/default --data photos/ [--compare bundles/int8] [--json] [--png eval.png]
    anchor-edge batch --input 'photos/**/*.jpg' --output results/ [--actors 2] [--address auto]
    anchor-edge serve [--port 8000] [--replicas 2] [--max-batch-size 8] [--batch-wait-ms 5]

Every subcommand that opens a bundle (predict, verify, eval, batch, serve, bench)
takes the same backend options (`options.add_backend_options`).
"""

from __future__ import annotations

import argparse

from anchor_edge.cli import batch, checkout, doctor, predict, serve, verify
from anchor_edge.cli import eval as evaluate


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; `export` and `bench` take the checkout scripts' options (parsed later)."""
    parser = argparse.ArgumentParser(
        prog="anchor-edge", description="Classify images from a few localized patches (AnchorNet)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in (predict, verify, evaluate, doctor, batch, serve):
        subcommand.add_parser(commands)
    checkout.add_parsers(commands)
    return parser
