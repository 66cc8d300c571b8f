"""Write a video of digits-benchmark test images, one sample per frame, with its labels: a stream to try and to measure.

    python -m export.data.digits_video /tmp/digits.mp4 --frames 60 --fps 5

Frame i is test sample i (class i % 10, held-out digits on held-out photos),
256 x 256; the labels go to a JSON file beside the video (same name, .json),
so a run of `anchor-edge predict /tmp/digits.mp4 --json` can be scored.
Exit codes: 0 success, 1 OpenCV cannot write the file, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from export.data.digits import IMAGE_SIZE, make_sample


def write_video(path: Path, frames: int, fps: float = 5.0, seed: int = 0) -> list[int]:
    """Write `frames` test samples as an MPEG-4 (.mp4) or Motion JPEG (.avi) video; returns the labels."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (IMAGE_SIZE, IMAGE_SIZE))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}; use a .mp4 or .avi path in a writable folder")
    labels = []
    try:
        for index in range(frames):
            sample = make_sample("test", index, seed)
            writer.write(sample.image)
            labels.append(sample.label)
    finally:
        writer.release()
    path.with_suffix(".json").write_text(json.dumps({"labels": labels, "fps": fps}) + "\n")
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.data.digits_video", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--fps", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.fps <= 0:
        parser.error("--frames must be >= 1 and --fps > 0")
    try:
        write_video(args.out, args.frames, args.fps)
    except OSError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
