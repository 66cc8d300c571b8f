"""Annotated video out: frames written with OpenCV's VideoWriter, closed on every exit so the file stays playable.

The container follows the file suffix (.mp4: MPEG-4 part 2, "mp4v"; .avi:
Motion JPEG; the codecs OpenCV's own FFmpeg build writes everywhere). The
writer opens on the first frame and takes its size; a later frame of another
size (an image folder) is resized to it, since a video has one size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anchor_edge.errors import InputError

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 25.0


class VideoOut:
    """Write BGR frames to `path` at `fps` (DEFAULT_FPS when the source does not say).

    Raises:
        InputError: the suffix is not one of FOURCC's, before anything is written.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in FOURCC:
            raise InputError(f"{self.path}: write video as one of {', '.join(sorted(FOURCC))}")
        self.fps = fps or DEFAULT_FPS
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write {self.path}; try a .avi path, or check the folder is writable")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoOut":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
