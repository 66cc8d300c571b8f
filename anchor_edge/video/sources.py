"""Where frames come from: video files, cameras, RTSP/HTTP streams, GStreamer pipelines, image folders.

Two kinds of source, because they fail differently:

- **Recorded** (a video file, an image folder or glob): every frame is
  delivered (or every n-th), in order, as fast as the caller asks; nothing is
  dropped, and the end of the file ends the stream.
- **Live** (a camera index, an rtsp:// or http(s):// URL, a GStreamer
  pipeline): a reader thread keeps only the newest frame, so a slow consumer
  sees the present rather than a queue that falls minutes behind; frames it
  never took are counted as dropped. A source that stops delivering is
  reopened with exponential backoff, and after `reconnects` failed tries the
  stream ends with a `SourceError` saying so.

Every failure to open (a missing file, a bad URL, a codec OpenCV cannot
read) is a `SourceError` (an `InputError`) naming the source.
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import cv2
import numpy as np

from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError, SourceError
from anchor_edge.method.preprocess import load_image

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: Tries to reopen a lost live source before giving up, unless told otherwise.
DEFAULT_RECONNECTS = 5
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class UnreadableFrame(InputError):
    """One frame of a recorded source could not be read; the stream records it and goes on."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class Frame(NamedTuple):
    """One frame: its index in the source, its time in the source (ms), when it was captured here, the BGR image."""

    index: int
    timestamp_ms: float
    captured_at: float
    image: np.ndarray


class Capture(Protocol):
    """The part of cv2.VideoCapture the sources use (tests pass fakes)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def grab(self) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


class FrameSource(Protocol):
    """What `Pipeline.stream` reads: frames until None, with what it knows about itself."""

    name: str
    live: bool
    dropped: int
    frame_count: int | None
    fps: float | None

    def read(self) -> Frame | None: ...
    def close(self) -> None: ...


def is_stream_source(spec: str | int) -> bool:
    """Whether `spec` names a stream rather than one image file (the CLI's choice between the two)."""
    if isinstance(spec, int):
        return True
    text = str(spec)
    return (
        text.isdigit()
        or text.startswith(LIVE_SCHEMES)
        or " ! " in text
        or _is_glob(text)
        or Path(text).suffix.lower() in VIDEO_SUFFIXES
        or Path(text).is_dir()
    )


def _is_glob(text: str) -> bool:
    """Whether `text` is a pattern: it has glob characters and is not itself a file ("photo[1].jpg" may be one)."""
    return any(c in text for c in "*?[") and not Path(text).is_file()


def open_source(
    spec: str | int | Path,
    *,
    every: int = 1,
    reconnects: int = DEFAULT_RECONNECTS,
    backoff_s: float = 0.5,
    capture: Callable[..., Capture] = cv2.VideoCapture,
) -> FrameSource:
    """Open `spec` as the kind of source it names (module docstring).

    Args:
        spec: a camera index (int or digits), a URL, a GStreamer pipeline
            (text with " ! "), an image folder or glob, or a video file.
        every: deliver every n-th frame of a recorded source (a live source
            always delivers its newest, so every > 1 is an InputError there).
        reconnects: tries to reopen a lost live source before giving up.
        backoff_s: wait before the first reconnect try; it doubles each try.
        capture: the VideoCapture factory (tests pass fakes).

    Raises:
        SourceError: the source cannot be opened, naming it and the likely cause.
        InputError: every is not an integer >= 1, or above 1 for a live source.
    """
    positive_int("every", every)
    text = str(spec)
    live = isinstance(spec, int) or text.isdigit() or " ! " in text or text.startswith(LIVE_SCHEMES)
    if live and every != 1:
        raise InputError(f"every={every} thins a recorded source; {text} is live and always gives its newest frame")
    if isinstance(spec, int) or text.isdigit():
        return LiveSource(f"camera {int(text)}", lambda: capture(int(text)), reconnects=reconnects, backoff_s=backoff_s)
    if " ! " in text:
        return LiveSource(
            "GStreamer pipeline", lambda: capture(text, cv2.CAP_GSTREAMER), reconnects=reconnects, backoff_s=backoff_s
        )
    if text.startswith(LIVE_SCHEMES):
        return LiveSource(text, lambda: capture(text), reconnects=reconnects, backoff_s=backoff_s)
    path = Path(text)
    if path.is_dir() or _is_glob(text):
        return ImageFiles(text, every=every)
    if not path.is_file():
        raise SourceError(f"{text}: no such file (give a video file, an image folder or glob, a camera index or a URL)")
    return VideoFile(path, every=every, capture=capture)


class VideoFile:
    """Every (every-th) frame of a video file, in order; timestamps from the file's frame rate."""

    live = False

    def __init__(self, path: Path, *, every: int = 1, capture: Callable[..., Capture] = cv2.VideoCapture) -> None:
        self.name = str(path)
        self.every = every
        self.dropped = 0
        self._capture = capture(str(path))
        if not self._capture.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video (an unknown container or codec, or not a video)")
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.frame_count = count if count > 0 else None
        self.fps = fps if fps > 0 else None
        self._next = 0

    def read(self) -> Frame | None:
        while self._next % self.every:
            if not self._capture.grab():
                return None
            self._next += 1
        ok, image = self._capture.read()
        if not ok or image is None:
            if self._next == 0:
                raise SourceError(f"{self.name}: no frame could be decoded (is the codec supported by this OpenCV?)")
            return None
        index, self._next = self._next, self._next + 1
        timestamp = index * 1000.0 / self.fps if self.fps else float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        return Frame(index, timestamp, time.monotonic(), image)

    def close(self) -> None:
        self._capture.release()


class ImageFiles:
    """The images of a folder or glob, sorted by name (every n-th of them); an unreadable one is delivered as an
    error, not skipped. As for a video file, a frame's index is its position among all the images, and
    `frame_count` counts them all."""

    live = False
    fps = None

    def __init__(self, pattern: str, *, every: int = 1) -> None:
        self.name = pattern
        folder = Path(pattern)
        paths = sorted(folder.iterdir()) if folder.is_dir() else sorted(Path(p) for p in glob.glob(pattern))
        self.paths = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.paths:
            raise SourceError(f"{pattern}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.every = every
        self.frame_count = len(self.paths)
        self.dropped = 0
        self._next = 0

    def read(self) -> Frame | None:
        """The next image; raises UnreadableFrame naming the file when it cannot be read (the stream records it)."""
        if self._next >= len(self.paths):
            return None
        index = self._next
        self._next += self.every
        path = self.paths[index]
        try:
            image = load_image(path)
        except InputError as error:
            raise UnreadableFrame(index, f"{path}: {error}") from error
        return Frame(index, float(index), time.monotonic(), image)

    def close(self) -> None:
        self._next = len(self.paths)


class LiveSource:
    """The newest frame of a camera or network stream, read by a background thread; reconnects when lost."""

    live = True
    frame_count = None

    def __init__(
        self, name: str, open_capture: Callable[[], Capture], *, reconnects: int = 5, backoff_s: float = 0.5
    ) -> None:
        self.name = name
        self.dropped = 0
        self.reconnected = 0
        self._open = open_capture
        self._reconnects = reconnects
        self._backoff_s = backoff_s
        self._capture = open_capture()
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(
                f"{name}: cannot open it (check the device index or URL, and that OpenCV has its backend)"
            )
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 else None
        self._latest: Frame | None = None
        self._error: SourceError | None = None
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"anchor-edge reader: {name}", daemon=True)
        self._thread.start()

    def read(self) -> Frame | None:
        """Wait for the newest frame not yet read; None once closed; SourceError once the source is lost."""
        with self._condition:
            while self._latest is None and self._error is None and not self._closed:
                self._condition.wait()
            if self._latest is not None:
                frame, self._latest = self._latest, None
                return frame
            if self._error is not None:
                raise self._error
            return None

    def close(self) -> None:
        """Stop the reader, which releases the capture as it ends: OpenCV does not allow a release while another
        thread is inside the capture's read(), and a stalled stream may keep it there for a while."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        """The reader thread: it owns the capture, and ends the source with an error rather than a silent hang."""
        try:
            self._read_until_closed()
        except Exception as error:  # a capture (or its reopening) that raises
            with self._condition:
                self._error = SourceError(f"{self.name}: reading failed ({type(error).__name__}: {error})")
                self._condition.notify_all()
        finally:
            self._capture.release()  # also the one a reconnect opened while close() was called

    def _read_until_closed(self) -> None:
        index, failures = 0, 0
        start = time.monotonic()
        while not self._closed:
            ok, image = self._capture.read()
            if not ok or image is None:
                if not self._reconnect(failures):
                    return
                failures += 1
                continue
            failures = 0
            now = time.monotonic()
            with self._condition:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = Frame(index, (now - start) * 1000.0, now, image)
                self._condition.notify_all()
            index += 1

    def _reconnect(self, failures: int) -> bool:
        """Reopen the source after a backoff that doubles with each failure since the last frame; False to stop.

        After `reconnects` tries without a frame between them, the error is recorded for `read` to raise.
        """
        self._capture.release()
        if failures >= self._reconnects:
            with self._condition:
                self._error = SourceError(f"{self.name}: lost, and {self._reconnects} reconnect tries gave no frame")
                self._condition.notify_all()
            return False
        with self._condition:
            if self._condition.wait_for(lambda: self._closed, timeout=self._backoff_s * 2**failures):
                return False
        self._capture = self._open()
        self.reconnected += 1
        return True
