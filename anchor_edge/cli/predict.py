"""`anchor-edge predict`: classify image files, or one video, camera, URL, pipeline or image folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from anchor_edge.cli.failure import report_failure
from anchor_edge.cli.options import (
    add_backend_options,
    add_bundle_option,
    add_common_flags,
    add_decision_options,
    backend_keywords,
    decision_keywords,
    positive_int,
    threshold,
)
from anchor_edge.errors import AnchorEdgeError
from anchor_edge.method.lsp import PRESETS
from anchor_edge.pipeline import Pipeline

log = logging.getLogger("anchor_edge")


def add_parser(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="classify images, a video, a camera or a stream with a bundle")
    predict.add_argument(
        "images",
        nargs="+",
        metavar="SOURCE",
        help="image files; or one video file, image folder or glob, camera index, rtsp/http URL or GStreamer pipeline",
    )
    add_bundle_option(predict)
    add_backend_options(predict)
    predict.add_argument("--preset", choices=sorted(PRESETS), help="LSP preset (default: the bundle's)")
    add_decision_options(predict)
    predict.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    predict.add_argument(
        "--save-vis",
        type=Path,
        metavar="PATH",
        help="a folder: one PNG of boxes and heatmap per image; for a stream, a .mp4/.avi annotated video",
    )
    predict.add_argument(
        "--early-exit",
        type=threshold,
        metavar="T",
        help="stop classifying an image's patches once their mean softmax has a class >= T (0: one patch)",
    )
    predict.add_argument(
        "--budget",
        type=float,
        metavar="B",
        help="cap each image's downstream multiply-adds at B x the full image's, patches in LSP order",
    )
    stream = predict.add_argument_group("streams (a video, camera, URL, pipeline or image folder)")
    stream.add_argument(
        "--every", type=positive_int, metavar="N", help="classify every N-th frame of a file (default: 1)"
    )
    stream.add_argument(
        "--batch-size",
        "--batch",
        type=positive_int,
        metavar="B",
        dest="batch_size",
        help="frames of a file per predict_batch (throughput; default: 1)",
    )
    stream.add_argument("--smooth", choices=("ema", "window"), help="average class probabilities over recent frames")
    add_common_flags(predict)
    predict.set_defaults(handler=run, subparser=predict)


#: Flags of the stream group, as `args` names them: they mean nothing for image files.
STREAM_ONLY = {"every": "--every", "batch_size": "--batch-size", "smooth": "--smooth"}


def run(args: argparse.Namespace) -> int:
    from anchor_edge.video.sources import is_stream_source

    streaming = len(args.images) == 1 and is_stream_source(args.images[0])
    given = [flag for name, flag in STREAM_ONLY.items() if getattr(args, name) is not None]
    if given and not streaming:
        args.subparser.error(f"{', '.join(given)} apply only to a stream source (a video, camera, URL, folder)")
    options = dict(
        preset=args.preset,
        **decision_keywords(args),
        early_exit=args.early_exit,
        budget=args.budget,
        **backend_keywords(args),
    )
    with Pipeline.from_bundle(args.bundle, **options) as pipe:
        log.info("bundle %s on %s", args.bundle, pipe.anchornet.describe())
        if streaming:
            from anchor_edge.cli.stream import run_stream

            return run_stream(pipe, args)
        return _predict_images(pipe, [Path(image) for image in args.images], args)


def _predict_images(pipe: Pipeline, paths: list[Path], args: argparse.Namespace) -> int:
    """Classify image files one by one; a file that fails is reported and the rest go on."""
    from tqdm import tqdm

    from anchor_edge.cli import visualize
    from anchor_edge.method.preprocess import load_image

    failures = 0
    names: set[str] = set()
    for path in tqdm(paths, unit="image", disable=None if len(paths) > 1 else True, leave=False):
        try:
            image = load_image(path)
            prediction = pipe(image)
        except AnchorEdgeError as error:
            failures += 1
            report_failure(error, args.debug)
            continue
        if args.json:
            tqdm.write(json.dumps({"image": str(path), **prediction.to_dict()}))
        else:
            tqdm.write(
                f"{path}: {prediction.label} (class {prediction.class_id}) score {prediction.score:.3f} "
                f"branch B{prediction.branch} patches {len(prediction.boxes)}"
            )
        if args.save_vis:
            name = _unique_name(path.stem, names)
            written = visualize.save(args.save_vis / f"{name}.png", image, prediction, pipe.bundle.class_names)
            log.info("wrote %s", written)
    return 1 if failures else 0


def _unique_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... when two images of one run share a file name."""
    name, count = stem, 1
    while name in taken:
        count += 1
        name = f"{stem}-{count}"
    taken.add(name)
    return name
