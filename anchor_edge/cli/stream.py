"""`anchor-edge predict SOURCE` on a stream: one line (or JSON line) per frame, annotated video, stream figures.

A recorded source shows a progress bar; a live one runs until Ctrl-C. Ctrl-C
ends the run cleanly either way: the video file is closed (so it stays
playable), the source released and the stream figures printed; the exit
code is then 130. Unreadable frames of an image folder are reported and
make the exit code 1; a source that cannot be opened or is lost for good
ends the run with one line and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack

from tqdm import tqdm

from anchor_edge.cli import visualize
from anchor_edge.pipeline import Pipeline
from anchor_edge.video.sources import VIDEO_SUFFIXES
from anchor_edge.video.stream import Smoothing, StreamResult
from anchor_edge.video.writer import VideoOut

log = logging.getLogger("anchor_edge")
INTERRUPTED = 130


def run_stream(pipe: Pipeline, args: argparse.Namespace) -> int:
    """Classify the stream `args.images[0]` as the flags say; returns the exit code."""
    smoothing = Smoothing(args.smooth) if args.smooth else None
    every, batch = args.every or 1, args.batch_size or 1
    interrupted = False
    with ExitStack() as stack:
        stream = stack.enter_context(pipe.stream(args.images[0], every=every, batch=batch, smoothing=smoothing))
        source = stream.source
        video = None
        if args.save_vis is not None and args.save_vis.suffix.lower() in VIDEO_SUFFIXES:
            # every n-th frame of a recording is kept: written at fps / n it plays at the source's speed
            kept_fps = source.fps / every if source.fps and not source.live else source.fps
            video = stack.enter_context(VideoOut(args.save_vis, kept_fps))
        total = None if source.frame_count is None else -(-source.frame_count // every)
        progress = stack.enter_context(
            tqdm(total=total, unit="frame", disable=True if source.live else None, leave=False)
        )
        names = pipe.bundle.class_names
        try:
            for result in stream:
                progress.update()
                _report(result, args.json, names)
                if result.prediction is None or args.save_vis is None:
                    continue
                label = None if result.smoothed_class_id is None else names[result.smoothed_class_id]
                picture = visualize.annotate(result.image, result.prediction, label, stream.stats.frames_per_s or None)
                if video is not None:
                    video.write(picture)
                else:
                    visualize.write_png(args.save_vis / f"frame_{result.index:06d}.png", picture)
        except KeyboardInterrupt:
            interrupted = True
    print(stream.stats.summary(), file=sys.stderr)
    if video is not None:
        print(f"wrote {video.path} ({video.frames} frames)", file=sys.stderr)
    if interrupted:
        return INTERRUPTED
    return 1 if stream.stats.errors else 0


def _report(result: StreamResult, as_json: bool, names: tuple[str, ...]) -> None:
    """One line per frame on stdout: JSON, or text (an unreadable frame is logged as an error)."""
    if as_json:
        tqdm.write(json.dumps(result.to_dict()))
    elif result.prediction is None:
        log.error("frame %d: %s", result.index, result.error)
    else:
        prediction = result.prediction
        smoothed = "" if result.smoothed_class_id is None else f" (smoothed: {names[result.smoothed_class_id]})"
        tqdm.write(
            f"frame {result.index}: {prediction.label} score {prediction.score:.3f}{smoothed} "
            f"branch B{prediction.branch} patches {len(prediction.boxes)} latency {result.latency_ms:.0f} ms"
        )
