"""`lorat app` in a real browser (Debian's chromium driven by Playwright): draw two targets with the mouse, track,
download the CSV and compare it with `lorat track`; browse an evaluation folder and check the plotted IoU against
the records. The security checks are plain HTTP.

With LORAT_APP_SCREENSHOTS=DIR the browser tests save the screenshots docs/app.md shows into DIR.
"""
from __future__ import annotations

import contextlib
import http.cookiejar
import io
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("av")

from lorat_plugin.app.serve import AppServer  # noqa: E402
from lorat_plugin.cli import build_parser, main  # noqa: E402
from lorat_plugin.commands.common import engine_from_args  # noqa: E402
from lorat_plugin.data.synthetic import moving_box_video  # noqa: E402
from lorat_plugin.data.target_files import box_line  # noqa: E402
from lorat_plugin.data.video import open_frames, write_video  # noqa: E402
from lorat_plugin.palette import target_colour  # noqa: E402

from system_tools import CHROMIUM  # noqa: E402

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra installs it
    sync_playwright = None
needs_browser = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                   reason="needs chromium (apt-get install chromium) and playwright (the test extra)")
SCREENSHOTS = os.environ.get("LORAT_APP_SCREENSHOTS")
SIZE = (160, 120)


def engine_of(checkpoint: Path | None = None) -> Any:
    """The engine `lorat app` loads: ``checkpoint``, or the shipped demo model."""
    model = ["--checkpoint", str(checkpoint)] if checkpoint else []
    return engine_from_args(build_parser().parse_args(["app", *model, "--device", "cpu"]))[0]


@contextlib.contextmanager
def running_app(folders: list[Path], engine_factory: Any, **options: Any) -> Iterator[AppServer]:
    server = AppServer(folders, engine_factory, port=0, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(30_000)
            yield page
            assert not errors, errors
        finally:
            browser.close()


def drag(page: Any, canvas_box: tuple[float, float, float, float]) -> None:
    """Drag with the mouse from one corner of ``canvas_box`` (x, y, w, h in the frame's pixels) to the other."""
    bounds = page.locator("#track-canvas").bounding_box()
    scale = bounds["width"] / SIZE[0]
    x, y, w, h = canvas_box
    page.mouse.move(bounds["x"] + x * scale, bounds["y"] + y * scale)
    page.mouse.down()
    page.mouse.move(bounds["x"] + (x + w / 2) * scale, bounds["y"] + (y + h / 2) * scale, steps=3)
    page.mouse.move(bounds["x"] + (x + w) * scale, bounds["y"] + (y + h) * scale, steps=3)
    page.mouse.up()


def two_targets_video(count: int) -> list[np.ndarray]:
    """A red and a white square crossing a smooth background (small PNG screenshots), 160 x 120."""
    width, height = SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack([40 + xs * 0.4, 70 + ys * 0.5, 120 + xs * 0.3], axis=2)
    frames = []
    for i in range(count):
        frame = background.copy()
        frame[30 + i:50 + i, 20 + 3 * i:44 + 3 * i] = (220, 40, 40)  # 24 x 20, right and down
        frame[70 - i:96 - i, 130 - 2 * i:150 - 2 * i] = (225, 225, 215)  # 20 x 26, left and up
        frames.append(frame.astype(np.uint8))
    return frames


def save_screenshot(page: Any, name: str) -> None:
    """The page's top 1280 x 760 pixels into SCREENSHOTS/name, in 256 colours chosen to keep every colour close
    (small files for the docs)."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 760})))
    shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE).save(
        Path(SCREENSHOTS) / name, optimize=True)


def csv_rows(text: str) -> list[list[float]]:
    lines = text.splitlines()
    assert lines[0] == "frame,target,x,y,w,h,confidence"
    return [[float(v) for v in line.split(",")] for line in lines[1:]]


@needs_browser
@pytest.mark.slow
def test_draw_two_targets_track_and_export_the_csv_of_lorat_track(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = two_targets_video(14)
    video = write_video(videos / "clip.mp4", frames, fps=10)
    engine = engine_of()  # the shipped demo model
    with running_app([videos], lambda: engine) as server, browser_page() as page:
        page.goto(server.url())
        page.wait_for_selector("body[data-ready=true]")
        page.click("#open-video")
        page.wait_for_selector("#track-canvas[data-frame='0']")  # the page's policy forbids wait_for_function
        drag(page, (20, 30, 24, 20))  # the red square
        page.wait_for_selector("[data-target='1']")
        drag(page, (130, 70, 20, 26))  # the white one
        page.wait_for_selector("[data-target='2']")
        page.click("#track-start")
        page.wait_for_selector("#track-state[data-state=done]", timeout=60_000)
        # the page followed the boxes live to the last frame
        assert page.get_attribute("#track-frame", "data-frame") == str(len(frames) - 1)
        if SCREENSHOTS:
            save_screenshot(page, "app-track.png")
        with page.expect_download() as download:
            page.click("#export-csv")
        exported = tmp_path / "app.csv"
        download.value.save_as(exported)

        rows = csv_rows(exported.read_text())
        assert len(rows) == 2 * len(frames)
        first = [row for row in rows if row[0] == 1]
        assert [row[1] for row in first] == [1, 2]
        # the boxes drawn, in the frame's pixels (whole pixels: the page rounds a drag)
        assert np.allclose([row[2:6] for row in first], [(20, 30, 24, 20), (130, 70, 20, 26)], atol=1)
        inits = [",".join(f"{v:g}" for v in row[2:6]) for row in first]
        command_line = tmp_path / "cli.csv"
        assert main(["track", str(video), "--init", inits[0], "--init", inits[1], "--output", str(command_line),
                     "--device", "cpu", "-q"]) == 0
        assert exported.read_text() == command_line.read_text()
        # one file per target, as `lorat track --output clip.txt` writes several targets
        with page.expect_download() as download:
            page.click("#export-files")
        download.value.save_as(tmp_path / "files.zip")
        assert main(["track", str(video), "--init", inits[0], "--init", inits[1], "--output",
                     str(tmp_path / "clip.txt"), "--device", "cpu", "-q"]) == 0
        with zipfile.ZipFile(tmp_path / "files.zip") as archive:
            assert sorted(archive.namelist()) == ["clip_1.txt", "clip_2.txt"]
            for name in archive.namelist():
                assert archive.read(name).decode() == (tmp_path / name).read_text()

        # correct target 2 on frame 8: it restarts there; target 1 and target 2's earlier boxes stay
        page.click("[data-target='2'] button")
        page.locator("#track-slider").fill("7")
        page.wait_for_selector("#track-frame[data-frame='7']")
        drag(page, (60, 20, 20, 20))
        page.wait_for_selector("#track-state:not([data-state=done])")
        page.click("#track-start")
        page.wait_for_selector("#track-state[data-state=done]", timeout=60_000)
        with page.expect_download() as download:
            page.click("#export-csv")
        download.value.save_as(tmp_path / "corrected.csv")
        with page.expect_download() as download:
            page.click("#export-video")
        download.value.save_as(tmp_path / "rendered.mp4")
    corrected = csv_rows((tmp_path / "corrected.csv").read_text())
    assert [r for r in corrected if r[1] == 1] == [r for r in rows if r[1] == 1]
    assert [r for r in corrected if r[1] == 2 and r[0] <= 7] == [r for r in rows if r[1] == 2 and r[0] <= 7]
    from lorat_plugin.engine import track_frames

    restart = next(r for r in corrected if r[1] == 2 and r[0] == 8)
    assert restart[6] == 1 and np.allclose(restart[2:6], (60, 20, 20, 20), atol=1)  # the box drawn
    decoded = list(open_frames(video))[7:]
    expected = [box_line(box, score) for _, box, score in track_frames(engine, decoded, np.array(restart[2:6]))]
    got = [box_line(np.array(r[2:6]), r[6]) for r in corrected if r[1] == 2 and r[0] >= 8]
    assert got == expected

    # the rendered video: every frame, each target's box drawn in its palette colour where the CSV puts it
    from lorat_plugin.data.video import draw_boxes

    rendered, plain = list(open_frames(tmp_path / "rendered.mp4")), list(open_frames(video))
    assert len(rendered) == len(plain) == len(frames)
    for index, (shown, original) in enumerate(zip(rendered, plain)):
        rows_here = [r for r in corrected if r[0] == index + 1]
        expected_frame = draw_boxes(original, [r[2:6] for r in rows_here],
                                    [target_colour(int(r[1]) - 1) for r in rows_here],
                                    [f"{int(r[1])}: {r[6]:.2f}" for r in rows_here]).astype(int)
        drawn = np.abs(expected_frame - original.astype(int)).sum(axis=2) > 60  # the pixels the boxes cover
        to_expected = np.abs(shown.astype(int) - expected_frame)[drawn].mean()
        to_plain = np.abs(shown.astype(int) - original.astype(int))[drawn].mean()
        assert to_expected < to_plain / 2, (index, to_expected, to_plain)


def evaluation_folders(tmp_path: Path) -> tuple[Path, list[str]]:
    """``runs/`` holding two evaluation folders of one small generated benchmark (`lorat make-benchmark`): the
    shipped demo model through `lorat evaluate`, and the static-box baseline, whose name in run.json is made markup
    (it must show as text)."""
    pytest.importorskip("skimage")  # the generator's photographs
    from lorat_plugin.data.datasets import load_dataset
    from lorat_plugin.evaluation import run_benchmark
    from lorat_plugin.trackers.baselines import baseline

    bench, runs = tmp_path / "bench", tmp_path / "runs"
    assert main(["make-benchmark", str(bench), "--sequences", "3", "--frames", "30", "--size", "192x144",
                 "-q"]) == 0
    assert main(["evaluate", "--dataset", "got10k", "--root", str(bench), "--split", "val", "--output",
                 str(runs / "a-demo"), "--device", "cpu", "--no-progress", "-q"]) == 0
    run_benchmark(baseline("static"), load_dataset("got10k", bench, "val"), runs / "b-static",
                  tracker_name="StaticBox", dataset="got10k", split="val", root=bench, progress=False, timed=False)
    marked_up = "<b>static</b> & co"
    info = json.loads((runs / "b-static" / "run.json").read_text())
    (runs / "b-static" / "run.json").write_text(json.dumps({**info, "tracker": marked_up}))  # as a hostile file
    demo_name = json.loads((runs / "a-demo" / "run.json").read_text())["tracker"]
    return runs, [demo_name, marked_up]


@needs_browser
@pytest.mark.slow
def test_results_worst_first_play_a_sequence_and_plot_the_records_iou(tmp_path: Path) -> None:
    from lorat_plugin.data.datasets import load_dataset
    from lorat_plugin.evaluation import load_records
    from lorat_plugin.geometry import rect_iou
    from lorat_plugin.palette import hex_colour, tracker_colours

    runs, names = evaluation_folders(tmp_path)
    with running_app([runs], engine_of) as server, browser_page() as page:
        page.goto(server.url())
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#results")  # nothing to track here: the page opens on Results
        boxes = page.locator("#evaluation-choice input")
        assert boxes.count() == 2
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.click("#open-results")
        page.wait_for_selector("#sequence-table tbody tr")
        # every name is text: the markup of the tracker name is shown, never parsed
        assert page.locator("#legend b").count() == 0 and names[1] in page.inner_text("#legend")
        rows = page.locator("#sequence-table tbody tr")
        first_scores = [float(rows.nth(k).locator("td").nth(2).inner_text()) for k in range(rows.count())]
        assert rows.count() == 3 and first_scores == sorted(first_scores)  # worst first by the first tracker's AO
        name = rows.nth(0).get_attribute("data-sequence")
        rows.nth(0).click()
        page.wait_for_selector("#results-canvas[data-frame='0']")
        page.keyboard.press("ArrowRight")  # one frame on
        page.wait_for_selector("#results-canvas[data-frame='1']")
        lines = page.locator("#iou-plot path.iou")
        assert lines.count() == 2
        colours = tracker_colours(names)  # the report's colours, in the same order of trackers
        for k, tracker in enumerate(names):
            line = lines.nth(k)
            assert line.get_attribute("data-tracker") == tracker
            assert line.get_attribute("stroke") == hex_colour(colours[tracker])
            plotted = [None if v == "" else float(v) for v in line.get_attribute("data-iou").split(",")]
            folder = runs / ("a-demo" if k == 0 else "b-static")
            record = load_records(folder)[name][1]
            info = json.loads((folder / "run.json").read_text())
            sequence = {s.name: s for s in load_dataset("got10k", info["root"], "val")}[name]
            lost = [int(b.get_attribute("data-frame")) for b in page.locator(f".lost-frame[data-tracker='{k}']").all()]
            expected = rect_iou(record.boxes, np.nan_to_num(sequence.boxes))
            assert len(plotted) == len(sequence)
            for value, iou, visible in zip(plotted, expected, sequence.visible):
                assert (value is None) == (not visible)
                if visible:
                    assert value == pytest.approx(iou, abs=5e-5)
            # lost: a visible target the box stops overlapping after overlapping it at the previous visible frame
            visible_frames = [i for i in range(len(sequence)) if sequence.visible[i]]
            assert lost == [i for previous, i in zip(visible_frames, visible_frames[1:])
                            if expected[i] <= 0 < expected[previous]]
        if SCREENSHOTS:
            page.locator("#results-slider").fill("2")
            page.wait_for_selector("#results-canvas[data-frame='2']")
            save_screenshot(page, "app-results.png")
        jumps = page.locator(".lost-frame")
        if jumps.count():  # jump to where a tracker loses the target
            target = jumps.nth(0).get_attribute("data-frame")
            jumps.nth(0).click()
            page.wait_for_selector(f"#results-canvas[data-frame='{target}']")
        page.click("#results-play")
        last = len(sequence) - 1
        page.wait_for_selector(f"#results-canvas[data-frame='{last}']")


class Client:
    """Plain HTTP with the app's cookie once :meth:`login` has opened the printed URL."""

    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def login(self) -> None:
        assert self.opener.open(self.server.url()).status == 200  # after the redirect that sets the cookie

    def request(self, path: str, data: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, bytes]:
        body = raw if raw is not None else None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(self.server.base_url + path, body, {
            "content-type": "application/json", **(headers or {})})
        try:
            with self.opener.open(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def test_only_the_started_folders_for_the_page_own_origin(tmp_path: Path) -> None:
    from PIL import Image

    shared, outside = tmp_path / "shared", tmp_path / "outside"
    shared.mkdir()
    outside.mkdir()
    frames, _ = moving_box_video(3, (32, 24))
    write_video(shared / "clip.mp4", frames)
    write_video(outside / "secret.mp4", frames)
    (shared / "link.mp4").symlink_to(outside / "secret.mp4")  # a link inside that leads outside
    (shared / "linked").symlink_to(outside, target_is_directory=True)
    (shared / "frames").mkdir()  # a frame folder is a video too
    for index, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(shared / "frames" / f"{index:04d}.png")
    clip_bytes = (shared / "clip.mp4").read_bytes()
    with running_app([shared], lambda: None, max_upload_bytes=len(clip_bytes)) as server:
        client = Client(server)
        assert client.request("/api/folders")[0] == 403  # no token yet
        assert client.request("/?token=wrong")[0] == 403
        client.login()
        status, listed = client.request("/api/folders")
        assert status == 200 and json.loads(listed)[0]["videos"] == ["clip.mp4", "frames/"]  # no link listed
        assert client.request("/api/track/open", {"folder": 0, "path": "clip.mp4"})[0] == 200
        status, answer = client.request("/api/track/open", {"folder": 0, "path": "frames/"})
        assert status == 200 and json.loads(answer)["name"] == "frames"
        for path in ("../outside/secret.mp4", str(outside / "secret.mp4"), "link.mp4", "linked/secret.mp4",
                     "clip.mp4\x00"):
            status, answer = client.request("/api/track/open", {"folder": 0, "path": path})
            assert status == 403, (path, answer)
        assert client.request("/api/track/open", {"folder": 1, "path": "clip.mp4"})[0] == 403
        assert client.request("/api/results", {"folders": [{"folder": 0, "path": "../outside"}]})[0] == 403
        status, answer = client.request("/api/results", {"folders": [{"folder": 0, "path": "."}]})
        assert status == 400 and b"is not an evaluation folder (no run.json)" in answer
        # other origins, other sites, other host names (DNS rebinding) are refused even with the cookie
        assert client.request("/api/folders", headers={"origin": "http://evil.example"})[0] == 403
        assert client.request("/api/folders", headers={"sec-fetch-site": "cross-site"})[0] == 403
        assert client.request("/api/folders", headers={"host": f"evil.example:{server.port}"})[0] == 403
        assert client.request("/api/folders", headers={"origin": server.base_url})[0] == 200
        # uploads are capped; a name is only a label
        status, answer = client.request("/api/track/upload", raw=clip_bytes, headers={
            "content-type": "application/octet-stream", "x-file-name": "../../<img src=x onerror=alert(1)>.mp4"})
        assert status == 200 and json.loads(answer)["name"] == "<img src=x onerror=alert(1)>.mp4"  # a label
        status, frame = client.request(f"/api/track/{json.loads(answer)['id']}/frame/2")
        assert status == 200 and frame[:2] == b"\xff\xd8"  # a JPEG
        status, answer = client.request("/api/track/upload", raw=clip_bytes + b"\0",
                                        headers={"content-type": "application/octet-stream",
                                                 "x-file-name": "../../big.mp4"})
        assert status == 413 and b"limit" in answer
        assert client.request("/api/track/nosuchsession/frame/0")[0] == 404


def test_lorat_app_prints_its_url_and_what_it_exposes(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import re
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "lorat_plugin.cli", "app", str(tmp_path), "--port", "0",
                                "--checkpoint", str(tiny_checkpoint), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url_line, exposure = process.stdout.readline(), process.stdout.readline()
        url = re.fullmatch(r"lorat app: open (http://127\.0\.0\.1:\d+/\?token=[\w-]+)\n", url_line)
        assert url, url_line + (process.stderr.read() if process.poll() is not None else "")
        assert "only this machine can connect" in exposure and "ssh -L" in exposure
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert b"lorat app" in opener.open(url.group(1), timeout=10).read()
    finally:
        process.terminate()
        process.wait(timeout=10)
    exposed = AppServer([tmp_path], lambda: None, host="0.0.0.0", port=0)  # bound, never served
    exposed.socket.close()
    assert "every network interface" in exposed.exposure() and str(tmp_path.resolve()) in exposed.exposure()


def test_a_stream_is_tracked_from_its_newest_frames(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import time

    from test_live_sources import mjpeg_server

    frames, truth = moving_box_video(30, SIZE, box=(20, 30, 24, 20), step=(2, 1))
    engine = engine_of(tiny_checkpoint)
    with mjpeg_server(frames, fps=20) as url, running_app([tmp_path], lambda: engine) as server:
        client = Client(server)
        client.login()
        status, answer = client.request("/api/track/open", {"source": str(tmp_path / "file.mp4")})
        assert status == 400 and b"pick them from the folders" in answer  # no way around the folders
        status, answer = client.request("/api/track/open", {"source": url})
        assert status == 200, answer
        session = json.loads(answer)["id"]
        assert client.request(f"/api/track/{session}/box", {"frame": 0, "box": truth[0].tolist()})[0] == 200
        assert client.request(f"/api/track/{session}/start", {})[0] == 200
        deadline = time.monotonic() + 30
        while json.loads(client.request(f"/api/track/{session}")[1])["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        status, answer = client.request(f"/api/track/{session}/box", {"frame": 0, "box": [1, 1, 9, 9]})
        assert status == 400 and b"is live" in answer  # a stream cannot be rewound
        status, text = client.request(f"/api/track/{session}/boxes.csv")
    rows = csv_rows(text.decode())
    numbers = [int(row[0]) for row in rows]
    assert rows[0] == [1, 1, *truth[0], 1.0] and len(rows) >= 2
    assert numbers == sorted(set(numbers)) and numbers[-1] <= len(frames)  # the source's own frame numbers


def test_targets_added_removed_and_restarted_on_any_frame(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The session's bookkeeping: a target added on a later frame starts there, a removed one stops, a correction
    re-tracks that target alone; each target's boxes are those it gets tracked alone from its box."""
    import threading

    from lorat_plugin.app.frames import FrameStore
    from lorat_plugin.app.session import TrackingSession
    from lorat_plugin.engine import track_frames

    frames = two_targets_video(12)
    video = write_video(tmp_path / "clip.mp4", frames)
    engine = engine_of(tiny_checkpoint)
    store = FrameStore("clip.mp4", open_frames(video))
    store.decode_in_background()
    session = TrackingSession("s", store, engine, threading.Lock())
    decoded = list(open_frames(video))

    def alone(start: int, box: tuple[float, ...], stop: int = len(frames)) -> dict[int, str]:
        return {start + k: box_line(b, s) for k, (_, b, s) in
                enumerate(track_frames(engine, decoded[start:stop], np.array(box, dtype=np.float64)))}

    def boxes_of(target: int) -> dict[int, str]:
        return {frame: box_line(box, score) for frame, t, box, score in session.rows() if t == target}

    def track() -> None:
        assert session.start()
        session.wait(timeout=60)
        assert not session.running and session.error is None

    assert session.set_box(0, (20, 30, 24, 20)) == 1
    assert session.set_box(4, (122, 66, 20, 26)) == 2  # a second target from frame 5 on
    track()
    assert boxes_of(1) == alone(0, (20, 30, 24, 20)) and boxes_of(2) == alone(4, (122, 66, 20, 26))
    from lorat_plugin.app.server import session_target_files

    with zipfile.ZipFile(io.BytesIO(session_target_files(session))) as archive:  # line n is frame n
        second = archive.read("clip_2.txt").decode().splitlines()
    assert second == ["nan,nan,nan,nan,0.0000"] * 4 + list(alone(4, (122, 66, 20, 26)).values())
    session.remove(1, 9)  # target 1 ends on frame 10
    assert boxes_of(1) == alone(0, (20, 30, 24, 20), stop=9)
    assert session.set_box(6, (120, 64, 22, 26), target_id=2) == 2  # corrected on frame 7
    track()
    assert boxes_of(1) == alone(0, (20, 30, 24, 20), stop=9)  # untouched
    assert boxes_of(2) == {**alone(4, (122, 66, 20, 26), stop=6), **alone(6, (120, 64, 22, 26))}
    session.remove(2, 0)
    assert 2 not in session.targets
    with pytest.raises(ValueError, match="at least 1 pixel"):
        session.set_box(0, (5, 5, 0, 4))


@needs_browser
@pytest.mark.slow
def test_upload_a_video_then_add_and_remove_a_target_in_the_page(tmp_path: Path, tiny_checkpoint: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    video = write_video(tmp_path / "upload me.mp4", two_targets_video(4))
    with running_app([empty], lambda: engine_of(tiny_checkpoint)) as server, browser_page() as page:
        page.goto(server.url())
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#upload", str(video))
        page.wait_for_selector("#track-canvas[data-frame='0']")
        assert page.inner_text("#status") == "upload me.mp4"
        drag(page, (20, 30, 24, 20))
        page.wait_for_selector("[data-target='1']")
        # the page opened on a session (as `lorat track --select` prints it) shows that video and its targets
        session = page.get_attribute("#export-csv", "href").split("/")[3]
        page.goto(f"{server.base_url}/?session={session}")
        page.wait_for_selector("#track-canvas[data-frame='0']")
        page.wait_for_selector("[data-target='1']")
        page.click("[data-target='1'] button:text('remove from here')")  # on the first frame: the target goes
        page.wait_for_selector("[data-target='1']", state="detached")
        page.click("#track-start")
        page.wait_for_selector("#status.error")
        assert "draw a box" in page.inner_text("#status")


def test_bad_input_is_one_line_before_the_model_loads(tmp_path: Path, capsys) -> None:
    import socket

    assert main(["app", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"lorat app: error: not a folder: {tmp_path / 'missing'}\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["app", str(tmp_path), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1:" in err and "(--host/--port)" in err
    assert main(["app", str(tmp_path), "--port", "0", "--checkpoint", str(tmp_path / "no.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no.safetensors" in err


def test_lorat_track_select_opens_the_page_on_the_input(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import re
    import subprocess
    import sys

    video = write_video(tmp_path / "clip.mp4", two_targets_video(5))
    process = subprocess.Popen([sys.executable, "-m", "lorat_plugin.cli", "track", str(video), "--select",
                                "--checkpoint", str(tiny_checkpoint), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("lorat track: draw the targets on the first frame of clip.mp4"), lines
        url = re.fullmatch(r"lorat app: open (http://127\.0\.0\.1:\d+/\?token=[\w-]+&session=(\w+))\n", lines[1])
        assert url, lines + ([process.stderr.read()] if process.poll() is not None else [])
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert b"lorat app" in opener.open(url.group(1), timeout=10).read()
        base = url.group(1).split("/?")[0]
        snapshot = json.load(opener.open(f"{base}/api/track/{url.group(2)}", timeout=10))
        assert snapshot["name"] == "clip.mp4" and snapshot["size"] == list(SIZE) and not snapshot["targets"]
        listed = json.load(opener.open(f"{base}/api/folders", timeout=10))
        assert listed[0]["videos"] == ["clip.mp4"]  # the input's folder is served, nothing else
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert main(["track", str(video), "--select", "--output", str(tmp_path / "boxes.csv")]) == 2


def test_results_of_a_subset_evaluation_open_as_lorat_report_scores_them(tmp_path: Path) -> None:
    pytest.importorskip("skimage")  # the generator's photographs
    from lorat_plugin.app.results import Results
    from lorat_plugin.data.datasets import load_dataset
    from lorat_plugin.evaluation import run_benchmark
    from lorat_plugin.trackers.baselines import baseline

    bench = tmp_path / "bench"
    assert main(["make-benchmark", str(bench), "--sequences", "3", "--frames", "8", "--size", "96x72", "--seed", "2",
                 "-q"]) == 0
    subset = load_dataset("got10k", bench, "val")[:2]
    run_benchmark(baseline("static"), subset, tmp_path / "static", tracker_name="StaticBox", dataset="got10k",
                  split="val", root=bench, progress=False, timed=False)
    results = Results([tmp_path / "static"])
    assert sorted(results.sequences) == sorted(s.name for s in subset)
    assert main(["report", str(tmp_path / "static"), "--output", str(tmp_path / "report"), "--no-plots", "-q"]) == 0
    reported = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert reported["trackers"]["StaticBox"] == results.metrics["trackers"]["StaticBox"]


def test_select_opens_a_camera_or_stream_with_lorat_tracks_options(monkeypatch) -> None:
    import lorat_plugin.app.frames as frames
    import lorat_plugin.data.live as live
    from lorat_plugin.app.server import open_live_store

    monkeypatch.setattr(live, "open_source", lambda source, **options: (source, options))
    monkeypatch.setattr(frames, "LiveStore", lambda name, source: (name, source))
    args = build_parser().parse_args(["track", "--camera", "0", "--select", "--stall-timeout", "2",
                                      "--camera-size", "320x240"])
    store = open_live_store(str(args.camera), stall_timeout=args.stall_timeout, camera_size=args.camera_size)
    assert store == ("camera 0", (0, {"stall_timeout": 2.0, "camera_size": (320, 240)}))
