"""Pipeline.stream and `anchor-edge predict SOURCE` on short videos made here from real photos and the digits set."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from anchor_edge import InputError, Pipeline
from anchor_edge.cli import main
from anchor_edge.video.sources import LiveSource, SourceError, open_source
from anchor_edge.video.stream import Smoothing, Stream
from anchor_edge.video.writer import VideoOut


def write_video(path, frames, fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decoded(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def photo_video(photos, tmp_path_factory):
    frames = [cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA) for _, image in photos[:6]] * 2
    return write_video(tmp_path_factory.mktemp("video") / "photos.mp4", frames)


@pytest.fixture(scope="module")
def digits_video(tmp_path_factory):
    from export.data import digits_video

    path = tmp_path_factory.mktemp("video") / "digits.mp4"
    labels = digits_video.write_video(path, 10, fps=10.0)
    assert labels == list(range(10)) and json.loads(path.with_suffix(".json").read_text())["labels"] == labels
    return path, labels


@pytest.fixture(scope="module")
def pipe(small_bundle):
    with Pipeline.from_bundle(small_bundle, backend="onnxruntime", threads=1) as pipeline:
        yield pipeline


def test_a_file_delivers_every_frame_in_order_or_every_nth(pipe, photo_video):
    with pipe.stream(photo_video) as stream:
        results = list(stream)
    assert [r.index for r in results] == list(range(12))
    assert [r.timestamp_ms for r in results] == pytest.approx([100.0 * i for i in range(12)])
    assert stream.stats.frames == 12 and stream.stats.dropped == 0 and stream.stats.frames_per_s > 0
    with pipe.stream(photo_video, every=5) as stream:
        assert [r.index for r in stream] == [0, 5, 10]


def test_labels_on_the_digits_video_match_predict_batch_on_its_frames(pipe, digits_video):
    path, _ = digits_video
    frames = decoded(path)
    expected = pipe.predict_batch(frames)
    for batch in (1, 4):
        with pipe.stream(path, batch=batch) as stream:
            got = list(stream)
        assert [r.prediction.class_id for r in got] == [p.class_id for p in expected]
        assert [r.prediction.boxes.tolist() for r in got] == [p.boxes.tolist() for p in expected]
        assert all(np.array_equal(r.image, frame) for r, frame in zip(got, frames))


def test_an_image_folder_streams_and_an_unreadable_file_is_an_error_row(pipe, photos, tmp_path):
    for i, (_, image) in enumerate(photos[:3]):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), image)
    (tmp_path / "1b.jpg").write_bytes(b"not a jpeg")
    with pipe.stream(tmp_path) as stream:
        results = list(stream)
    assert [r.index for r in results] == [0, 1, 2, 3]  # 0.jpg, 1.jpg, 1b.jpg, 2.jpg
    assert results[2].prediction is None and "1b.jpg" in results[2].error
    assert stream.stats.frames == 3 and stream.stats.errors == 1
    with pipe.stream(tmp_path, every=2) as stream:  # as for a video file: positions among all the images
        assert [r.index for r in stream] == [0, 2] and stream.source.frame_count == 4


def test_a_file_whose_name_has_glob_characters_is_that_file_and_a_pattern_is_still_a_pattern(tmp_path, photos):
    from anchor_edge.video.sources import is_stream_source

    cv2.imwrite(str(tmp_path / "shot[1].png"), photos[0][1])
    cv2.imwrite(str(tmp_path / "shot1.png"), photos[1][1])  # what "shot[1].png" matches as a pattern
    assert not is_stream_source(str(tmp_path / "shot[1].png"))  # the CLI predicts that one image
    assert is_stream_source(str(tmp_path / "shot[0-9].png"))
    assert open_source(str(tmp_path / "shot[0-9].png")).paths == [tmp_path / "shot1.png"]


def test_smoothing_averages_class_distributions():
    ema, window = Smoothing("ema", alpha=0.5), Smoothing("window", window=2)
    first, second, third = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])
    assert ema.update(first).tolist() == [1.0, 0.0]
    assert ema.update(second).tolist() == [0.5, 0.5]
    assert ema.update(third).tolist() == [0.25, 0.75]
    window.update(first)
    window.update(second)
    assert window.update(third).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="smoothing"):
        Smoothing("median")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Smoothing("window", window=0), "window must be an integer >= 1, got 0"),
        (lambda: Stream(None, None, batch=True), "batch must be an integer >= 1, got True"),
        (lambda: open_source("missing.mp4", every=0), "every must be an integer >= 1, got 0"),
    ],
)
def test_counts_below_one_are_refused_in_the_librarys_one_wording(make, message):
    with pytest.raises(InputError, match=message):
        make()


@pytest.mark.parametrize("live", [0, "1", "rtsp://127.0.0.1:9/cam", "videotestsrc ! appsink"])
def test_every_is_refused_for_a_live_source_before_it_opens(live):
    with pytest.raises(InputError, match="is live and always gives its newest frame"):
        open_source(live, every=2, capture=lambda *_: pytest.fail("opened a source it should have refused"))


class FakeCapture:
    """A live camera: a new frame every `interval` s; after `frames` frames it fails (a lost connection)."""

    def __init__(self, frames: int = 10_000, interval: float = 0.005, opens: bool = True) -> None:
        self.left, self.interval, self.opens, self.released = frames, interval, opens, False
        self.made = 0
        self.image = np.zeros((240, 320, 3), np.uint8)

    def isOpened(self) -> bool:
        return self.opens

    def read(self):
        time.sleep(self.interval)
        if not self.opens or self.left <= 0:
            return False, None
        self.left -= 1
        self.made += 1
        return True, self.image

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class SlowPipeline:
    """predict_batch that takes `seconds` per call: a pipeline that cannot keep up with the camera."""

    def __init__(self, pipe: Pipeline, seconds: float) -> None:
        self.pipe, self.seconds = pipe, seconds
        self.prediction = None

    def predict_batch(self, images):
        time.sleep(self.seconds)
        if self.prediction is None:
            self.prediction = self.pipe(images[0])
        return [self.prediction for _ in images]


class CameraBoundPipeline:
    """predict_batch that returns only once the camera has made `frames` more frames: a pipeline slower than the
    camera, by a count of frames rather than by a clock, so the test does not depend on the machine's speed."""

    def __init__(self, pipe: Pipeline, camera: FakeCapture, frames: int) -> None:
        self.pipe, self.camera, self.frames = pipe, camera, frames
        self.made_after: list[int] = []  # the camera's frame count as each call returned
        self.prediction = None

    def predict_batch(self, images):
        until = self.camera.made + self.frames
        deadline = time.monotonic() + 30
        while self.camera.made < until and time.monotonic() < deadline:
            time.sleep(0.0005)
        if self.prediction is None:
            self.prediction = self.pipe(images[0])
        self.made_after.append(self.camera.made)
        return [self.prediction for _ in images]


def test_a_slow_pipeline_on_a_live_source_drops_frames_and_keeps_latency_bounded(pipe):
    camera = FakeCapture(interval=0.001)
    slow = CameraBoundPipeline(pipe, camera, frames=10)
    stream = Stream(slow, LiveSource("fake camera", lambda: camera))
    results = []
    with stream:
        for result in stream:
            results.append(result)
            if len(results) == 20:
                break
    # The camera made 10 frames during each of the 20 calls and only one after a call was taken: at least 9 of every
    # 10 were dropped (a bound that leaves out the first call, whose last frame may still be on its way).
    assert stream.stats.dropped >= 19 * 9
    # Each frame taken was at most one older than the newest the camera had made when the call before returned (that
    # one may still be on its way to the reader): no queue of old frames builds up.
    assert all(later.index >= made - 2 for later, made in zip(results[1:], slow.made_after))
    assert [r.index for r in results] == sorted(r.index for r in results)


def test_a_batch_of_a_live_source_is_refused_and_the_source_it_opened_is_closed(pipe, monkeypatch):
    from anchor_edge.video import stream as stream_module

    opened = []

    def open_fake(spec, *, every, reconnects):
        opened.append(LiveSource(f"camera {spec}", lambda: FakeCapture(interval=0.002), reconnects=reconnects))
        return opened[-1]

    monkeypatch.setattr(stream_module, "open_source", open_fake)
    with pytest.raises(InputError, match="batch=8 groups frames of a recorded source; camera 0 is live"):
        pipe.stream(0, batch=8)
    assert not opened[0]._thread.is_alive()  # not left reading the camera


def test_options_for_opening_a_source_are_refused_with_an_open_one(pipe, photo_video):
    source = open_source(photo_video)  # the user opened it, with their own options
    try:
        for options in ({"every": 5}, {"reconnects": 0}):
            with pytest.raises(InputError, match="apply to a source anchor-edge opens"):
                pipe.stream(source, **options)
    finally:
        source.close()


def test_a_lost_live_source_reconnects_then_ends_in_one_error(pipe):
    captures = [FakeCapture(frames=3, interval=0.001), FakeCapture(frames=2, interval=0.001)]
    opened = []

    def open_capture():
        capture = captures.pop(0) if captures else FakeCapture(opens=False)
        opened.append(capture)
        return capture

    source = LiveSource("flaky camera", open_capture, reconnects=3, backoff_s=0.001)
    with pytest.raises(SourceError, match="3 reconnect tries"):
        with Stream(SlowPipeline(pipe, 0.0), source) as stream:
            for _ in stream:
                pass
    assert source.reconnected == 4 and len(opened) == 5  # first open, the second camera, three failed tries
    assert all(capture.released for capture in opened)


class StalledCapture(FakeCapture):
    """A stream that stalls inside read() until `resume` is set; it records which thread released it, and when."""

    def __init__(self) -> None:
        super().__init__(interval=0.0)
        self.resume, self.inside_read = threading.Event(), threading.Event()
        self.released_by, self.released_inside_read = None, None

    def read(self):
        self.inside_read.set()
        self.resume.wait()
        result = super().read()
        self.inside_read.clear()
        return result

    def release(self) -> None:
        self.released_inside_read = self.inside_read.is_set()
        self.released_by = threading.current_thread().name
        super().release()


def test_closing_a_stalled_live_source_releases_its_capture_from_the_reader_once_read_returns():
    capture = StalledCapture()
    source = LiveSource("stalled camera", lambda: capture)
    assert capture.inside_read.wait(5)
    closing = threading.Thread(target=source.close)
    closing.start()
    time.sleep(0.1)
    assert not capture.released  # OpenCV does not allow a release while another thread is inside read()
    capture.resume.set()
    closing.join(5)
    assert capture.released and not capture.released_inside_read
    assert capture.released_by.startswith("anchor-edge reader") and not source._thread.is_alive()


def test_a_capture_that_raises_ends_the_source_with_an_error_not_a_hang():
    class Raising(FakeCapture):
        def read(self):
            raise RuntimeError("driver fault")

    capture = Raising()
    source = LiveSource("faulty camera", lambda: capture)
    with pytest.raises(SourceError, match=r"faulty camera: reading failed \(RuntimeError: driver fault\)"):
        source.read()
    source.close()
    assert capture.released


def test_sources_that_cannot_be_opened_are_one_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "garbage.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(SourceError, match="cannot open this video"):
        open_source(tmp_path / "garbage.mp4")
    with pytest.raises(SourceError, match="cannot open it"):
        open_source("rtsp://127.0.0.1:9/none", capture=lambda *_: FakeCapture(opens=False))


def test_cli_writes_an_annotated_video_with_the_inputs_frames_and_size(small_bundle, photo_video, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["predict", str(photo_video), "--bundle", str(small_bundle), "--save-vis", str(out), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["frame"] for line in lines] == list(range(12)) and all("label" in line for line in lines)
    frames = decoded(out)
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    capture.release()


def test_every_nth_frame_written_at_the_kept_rate_plays_at_the_sources_speed(small_bundle, photo_video, tmp_path):
    out = tmp_path / "every3.avi"
    assert (
        main(["predict", str(photo_video), "--bundle", str(small_bundle), "--every", "3", "--save-vis", str(out)]) == 0
    )
    assert len(decoded(out)) == 4  # frames 0, 3, 6, 9 of 12
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0 / 3, rel=1e-3)  # 1.2 s of video, as the source
    capture.release()


@pytest.mark.parametrize("source", ["missing.mp4", "garbage.mp4", "rtsp://127.0.0.1:9/none"])
def test_cli_ends_a_bad_source_with_exit_code_one_and_one_line(small_bundle, tmp_path, capsys, source, monkeypatch):
    (tmp_path / "garbage.mp4").write_bytes(b"garbage" * 100)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", source, "--bundle", str(small_bundle)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("anchor-edge:")]
    assert len(errors) == 1 and ("no such file" in errors[0] or "cannot open" in errors[0])


def test_ctrl_c_closes_the_video_so_it_stays_playable(small_bundle, photo_video, tmp_path, monkeypatch, capsys):
    from anchor_edge.video import stream as stream_module

    calls = {"n": 0}
    real = stream_module.Stream._result

    def interrupt_after_three(self, *args):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(stream_module.Stream, "_result", interrupt_after_three)
    out = tmp_path / "cut.mp4"
    assert main(["predict", str(photo_video), "--bundle", str(small_bundle), "--save-vis", str(out)]) == 130
    assert len(decoded(out)) == 3
    assert "3 frames" in capsys.readouterr().err


def test_a_video_suffix_opencv_cannot_write_is_a_one_line_input_error(small_bundle, photo_video, tmp_path, capsys):
    out = tmp_path / "annotated.webm"
    assert main(["predict", str(photo_video), "--bundle", str(small_bundle), "--save-vis", str(out)]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("anchor-edge:")]
    assert "annotated.webm: write video as one of .avi, .m4v, .mkv, .mov, .mp4" in line and not out.exists()
    with pytest.raises(InputError, match="write video as one of"):  # the typed error, for Python callers too
        VideoOut(out)


def test_the_reader_thread_stops_when_the_stream_closes(pipe):
    source = LiveSource("fake camera", lambda: FakeCapture(interval=0.002))
    with Stream(SlowPipeline(pipe, 0.0), source) as stream:
        next(iter(stream))
    assert not source._thread.is_alive()
    assert not any(t.name.startswith("anchor-edge reader") for t in threading.enumerate())
