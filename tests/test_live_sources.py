"""Live sources and real-time mode without a camera: an MJPEG stream served from 127.0.0.1 inside the test, paced at
the clip's frame rate; the newest-frame reader (drops, pacing, stalls, failures); the camera and RTSP openers with
PyAV's ``open`` mocked; an RTSP stream where a local RTSP server is installed."""
from __future__ import annotations

import contextlib
import http.server
import io
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from lorat_plugin.cli import main
from lorat_plugin.data import FrameError
from lorat_plugin.data.live import NewestFrames, open_source, source_stem
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.data.target_files import CSV_HEADER
from lorat_plugin.data.video import write_video
from lorat_plugin.engine import TrackingEngine, track_targets
from lorat_plugin.model.sources import load_model

from system_tools import free_port

av = pytest.importorskip("av")

SIZE = (96, 64)
BOX = (12, 20, 18, 16)


def clip(frames: int) -> list[np.ndarray]:
    images, _ = moving_box_video(frames, SIZE, box=BOX, step=(1, 0), seed=0)
    return images


@contextlib.contextmanager
def mjpeg_server(frames: list[np.ndarray], fps: float, *, hold_after: int | None = None) -> Iterator[str]:
    """An MJPEG stream (multipart/x-mixed-replace, as IP cameras serve it) of ``frames`` at ``fps`` on 127.0.0.1;
    its URL. ``hold_after``: after that many frames keep the connection open without sending (a stalled camera)
    until the server stops."""
    jpegs = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
        jpegs.append(buffer.getvalue())
    stopping = threading.Event()

    class Stream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked: the end of the stream is a clean end, not a dropped connection

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            started = time.perf_counter()
            try:
                for index, jpeg in enumerate(jpegs):
                    if index == hold_after:
                        stopping.wait(30)
                        return
                    delay = started + index / fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg),
                                                                                                         jpeg)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
                pass

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


def summary_counts(err: str) -> tuple[int, int]:
    match = re.search(r"real time: (\d+) frames tracked, (\d+) dropped", err)
    assert match, err
    return int(match[1]), int(match[2])


def test_an_http_mjpeg_stream_is_tracked_in_real_time(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    frames = clip(20)
    output = tmp_path / "live.csv"
    with mjpeg_server(frames, fps=20) as url:
        assert main(["track", url, "--init", ",".join(map(str, BOX)), "--init", "60,30,20,20", "--checkpoint",
                     str(tiny_checkpoint), "-o", str(output), "-q"]) == 0
    err = capsys.readouterr().err
    processed, dropped = summary_counts(err)
    assert processed + dropped == len(frames) and processed >= 1
    assert re.search(r"latency p50 [\d.]+ ms, p95 [\d.]+ ms; the source ended", err), err
    lines = output.read_text().splitlines()
    assert lines[0] == CSV_HEADER and len(lines) == 1 + 2 * processed
    numbers = [int(line.split(",")[0]) for line in lines[1::2]]
    assert numbers[0] == 1 and numbers == sorted(set(numbers)) and numbers[-1] == len(frames)
    assert lines[1] == "1,1,12.0000,20.0000,18.0000,16.0000,1.0000"
    assert source_stem(url) == "stream"


def tracked_at_most(rate: float, tracked: Iterator) -> Iterator:
    """``tracked``, with each frame's work stretched to at least 1 / ``rate`` seconds."""
    while True:
        started = time.perf_counter()
        try:
            item = next(tracked)
        except StopIteration:
            return
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
        yield item


def test_a_stream_four_times_faster_than_the_tracker_drops_frames() -> None:
    # On a fast machine the demo model tracks these small frames at ~200 fps, faster than the test's server can
    # send JPEG frames 4x over: the tracker is held to at most 40 fps, so the 4x pace stays one the server keeps.
    engine = TrackingEngine(load_model("demo"), device="cpu")
    frames = clip(40)
    timing = tracked_at_most(40, track_targets(engine, frames[:6], np.array([BOX])))
    next(timing)
    started = time.perf_counter()
    steps = sum(1 for _ in timing)
    tracker_fps = steps / (time.perf_counter() - started)
    with mjpeg_server(frames, fps=4 * tracker_fps) as url:
        source = open_source(url)
        assert source.live and len(source) == 0  # no duration: a live stream, real time by default
        reader = NewestFrames(source, stall_timeout=5)
        numbers = [reader.frame_number
                   for _ in tracked_at_most(40, track_targets(engine, reader, np.array([BOX])))]
    assert reader.end == "the source ended" and not reader.failed
    assert reader.processed + reader.dropped == len(frames) and reader.processed >= 1
    assert reader.dropped > 0, (tracker_fps, reader.processed)
    assert numbers[0] == 1 and numbers[-1] == len(frames) and numbers == sorted(set(numbers))


def test_a_stalled_stream_ends_the_run_with_every_output_written(tmp_path: Path, tiny_checkpoint: Path,
                                                                 capsys) -> None:
    output = tmp_path / "live.txt"
    render = tmp_path / "live.gif"
    with mjpeg_server(clip(10), fps=50, hold_after=3) as url:
        started = time.perf_counter()
        code = main(["track", url, "--init", ",".join(map(str, BOX)), "--checkpoint", str(tiny_checkpoint),
                     "--stall-timeout", "0.5", "-o", str(output), "--render", str(render), "-q"])
        elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 1 and elapsed < 5, (code, elapsed, err)  # reported, not waited on
    assert "stalled" in err and "Traceback" not in err
    processed, dropped = summary_counts(err)
    assert processed + dropped == 3 and len(output.read_text().splitlines()) == processed
    with Image.open(render) as gif:
        assert gif.n_frames == processed


def test_a_stalled_stream_without_real_time_mode_is_an_error_naming_it(tmp_path: Path, tiny_checkpoint: Path,
                                                                       capsys) -> None:
    output = tmp_path / "b.txt"
    with mjpeg_server(clip(10), fps=50, hold_after=3) as url:
        started = time.perf_counter()
        code = main(["track", url, "--no-realtime", "--init", ",".join(map(str, BOX)), "--checkpoint",
                     str(tiny_checkpoint), "--stall-timeout", "0.5", "-o", str(output), "-q"])
        elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 5, (code, elapsed, err)
    assert f"{url}: no data for 0.5 s after frame 3 (the stream stalled)" in err and "Traceback" not in err
    assert "stopped after 3 frames" in err and len(Path(f"{output}.partial").read_text().splitlines()) == 3
    assert not output.exists()


class Frames:
    """A source of ``count`` frames; after ``stall_after`` frames it waits (until released), after ``fail_after``
    it raises."""

    def __init__(self, count: int, *, stall_after: int | None = None, fail_after: int | None = None) -> None:
        self.count, self.stall_after, self.fail_after = count, stall_after, fail_after
        self.release = threading.Event()

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.count):
            if index == self.stall_after:
                self.release.wait(30)
                return
            if index == self.fail_after:
                raise FrameError("cam: the stream broke after frame 2: Connection reset by peer")
            yield np.full((4, 4, 3), index, np.uint8)


def test_the_newest_frame_reader_drops_paces_and_reports_its_end() -> None:
    reader = NewestFrames(Frames(20), pace_fps=200)
    seen = []
    for frame in reader:
        seen.append((reader.frame_number, int(frame[0, 0, 0])))
        time.sleep(0.03)  # six frames come while one is tracked
    assert reader.end == "the source ended" and not reader.failed
    assert seen[0] == (1, 0) and seen[-1] == (20, 19) and all(number == value + 1 for number, value in seen)
    assert reader.dropped > 0 and reader.processed + reader.dropped == 20 == reader.delivered

    reader = NewestFrames(Frames(10), pace_fps=50)  # a file in real time: at its frame rate, nothing dropped
    started = time.perf_counter()
    assert len(list(reader)) == 10 and reader.dropped == 0
    assert time.perf_counter() - started >= 9 / 50

    source = Frames(10, stall_after=2)
    reader = NewestFrames(source, stall_timeout=0.3)
    started = time.perf_counter()
    assert len(list(reader)) == 2
    assert time.perf_counter() - started < 2 and reader.failed and "stalled" in reader.end
    source.release.set()

    reader = NewestFrames(Frames(10, fail_after=2))
    assert len(list(reader)) == 2 and reader.failed
    assert reader.end == "the source failed: cam: the stream broke after frame 2: Connection reset by peer"


def test_ctrl_c_in_real_time_mode_writes_every_output(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                      monkeypatch) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(60), fps=20)  # 3 s: Ctrl-C comes well before its end
    track = TrackingEngine.track
    calls = []

    def interrupted(self, states, frames):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return track(self, states, frames)

    monkeypatch.setattr(TrackingEngine, "track", interrupted)
    output, render = tmp_path / "b.csv", tmp_path / "r.gif"
    assert main(["track", str(video), "--realtime", "--init", ",".join(map(str, BOX)), "--checkpoint",
                 str(tiny_checkpoint), "-o", str(output), "--render", str(render), "-q"]) == 0
    err = capsys.readouterr().err
    assert "stopped by Ctrl-C" in err and summary_counts(err)[0] == 4
    assert len(output.read_text().splitlines()) == 1 + 4 and not list(tmp_path.glob("*.partial"))
    with Image.open(render) as gif:
        assert gif.n_frames == 4


class FakeContainer:
    """What ``av.open`` returns, for the openers: one video stream of three frames."""

    def __init__(self, duration: int | None = None) -> None:
        stream = type("Stream", (), {"average_rate": 30, "guessed_rate": None, "frames": 0})()
        self.streams = type("Streams", (), {"video": [stream]})()
        self.duration = duration
        self.closed = False

    def decode(self, stream):
        for value in range(3):
            yield type("Frame", (), {"to_ndarray": lambda self, format, v=value: np.full((2, 2, 3), v, np.uint8)})()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []

    def fake_open(url, **kwargs):
        calls.append((url, kwargs))
        return FakeContainer(duration=None if "stream" in url or "video" in url or ":none" in url else 10 ** 6)

    monkeypatch.setattr(av, "open", fake_open)
    return calls


def test_camera_and_stream_openers_call_pyav_as_each_source_needs(opened, monkeypatch) -> None:
    import lorat_plugin.data.live as live

    monkeypatch.setattr(live.sys, "platform", "linux")
    monkeypatch.setattr(live.os.path, "exists", lambda path: path == "/dev/video3")
    camera = open_source(3, camera_size=(640, 480), stall_timeout=2)
    assert opened[-1] == ("/dev/video3", {"format": "v4l2", "options": {"video_size": "640x480"},
                                          "timeout": (10.0, 2.0)})
    assert camera.live and camera.fps == 30 and camera.name == "/dev/video3"
    assert [int(frame[0, 0, 0]) for frame in camera] == [0, 1, 2]
    with pytest.raises(FrameError, match="only once"):
        list(camera)
    assert open_source("/dev/video3").live and opened[-1][1]["format"] == "v4l2"
    with pytest.raises(FrameError, match=r"camera /dev/video4 not found \(the cameras here: `ls /dev/video\*`\)"):
        open_source("/dev/video4")

    monkeypatch.setattr(live.sys, "platform", "darwin")
    open_source(1)
    assert opened[-1][0] == "1:none" and opened[-1][1]["format"] == "avfoundation"
    monkeypatch.setattr(live.sys, "platform", "win32")
    with pytest.raises(FrameError, match="stream the camera over RTSP or HTTP"):
        open_source(0)

    rtsp = open_source("rtsp://10.0.0.5:8554/cam")
    assert rtsp.live and opened[-1] == ("rtsp://10.0.0.5:8554/cam", {"format": None,
                                                                    "options": {"rtsp_transport": "tcp"},
                                                                    "timeout": (10.0, 5.0)})
    assert open_source("http://cam.local/stream.mjpg").live  # no duration: a stream
    assert not open_source("https://example.org/clip.mp4").live  # a video file over HTTP: real time on request
    assert [source_stem(s) for s in (0, "/dev/video2", "rtsp://10.0.0.5:8554/cam", "http://host:80/", "a/b.mp4")] == [
        "camera0", "camera2", "cam", "host", "b"]


def test_a_stream_that_cannot_be_opened_is_one_line_naming_it(monkeypatch, capsys) -> None:
    def refused(url, **kwargs):
        raise OSError(111, "Connection refused")

    monkeypatch.setattr(av, "open", refused)
    assert main(["track", "rtsp://127.0.0.1:9/none", "--init", "1,1,5,5", "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot open rtsp://127.0.0.1:9/none: Connection refused" in err and len(err.strip().splitlines()) == 1
    assert main(["track", "--camera", "0", "clip.mp4", "--init", "1,1,5,5", "-q"]) == 2
    assert "give an INPUT or --camera N" in capsys.readouterr().err


def rtsp_server_command() -> list[str] | None:
    """How to start a local RTSP server here: GStreamer's RTSP server through the system Python's GObject bindings
    (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-good), else None."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return None
    probe = subprocess.run([python, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
                                          "assert Gst.ElementFactory.find('jpegenc') and "
                                          "Gst.ElementFactory.find('rtpjpegpay')"],
                           capture_output=True, timeout=60)
    return [python, str(Path(__file__).with_name("rtsp_server.py"))] if probe.returncode == 0 else None


@pytest.mark.skipif(rtsp_server_command() is None,
                    reason="no local RTSP server: GStreamer's (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi "
                           "gstreamer1.0-plugins-good) is not installed")
def test_an_rtsp_stream_is_tracked_in_real_time(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    port = free_port()
    server = subprocess.Popen([*rtsp_server_command(), str(port), "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        output = tmp_path / "rtsp.csv"
        code = main(["track", f"rtsp://127.0.0.1:{port}/test", "--init", "40,30,40,30", "--checkpoint",
                     str(tiny_checkpoint), "--stall-timeout", "3", "-o", str(output), "-q"])
    finally:
        server.terminate()
        server.wait(timeout=10)
    err = capsys.readouterr().err
    processed, dropped = summary_counts(err)
    # Frames the server sent while the model loaded come in a burst and are mostly dropped; a frame may be lost as
    # the session starts or ends, and a server may end its stream by closing it (0) or by going silent (1).
    assert code in (0, 1) and processed >= 1 and 50 <= processed + dropped <= 60, err
    assert len(output.read_text().splitlines()) == 1 + processed
