"""`lorat app` in a real browser (Debian's chromium driven by Playwright): draw two targets with the mouse, track,
download the CSV and compare it with `lorat track`; browse an evaluation folder and check the plotted IoU against
the records. The security checks are plain HTTP.

With LORAT_APP_SCREENSHOTS=DIR the browser tests save the screenshots docs/app.md shows into DIR.
"""
from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("av")

from lorat_plugin.app import AppServer  # noqa: E402
from lorat_plugin.cli import build_parser, main  # noqa: E402
from lorat_plugin.commands.common import engine_from_args  # noqa: E402
from lorat_plugin.data.synthetic import moving_box_video  # noqa: E402
from lorat_plugin.data.target_files import box_line  # noqa: E402
from lorat_plugin.data.video import open_frames, write_video  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra installs it
    sync_playwright = None
needs_browser = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                   reason="needs chromium (apt-get install chromium) and playwright (the test extra)")
SCREENSHOTS = os.environ.get("LORAT_APP_SCREENSHOTS")
SIZE = (160, 120)


def engine_of(checkpoint: Path) -> Any:
    args = build_parser().parse_args(["app", "--checkpoint", str(checkpoint), "--device", "cpu"])
    return engine_from_args(args)[0]


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


def csv_rows(text: str) -> list[list[float]]:
    lines = text.splitlines()
    assert lines[0] == "frame,target,x,y,w,h,confidence"
    return [[float(v) for v in line.split(",")] for line in lines[1:]]


@needs_browser
@pytest.mark.slow
def test_draw_two_targets_track_and_export_the_csv_of_lorat_track(tmp_path: Path, tiny_checkpoint: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    frames, truth = moving_box_video(14, SIZE, box=(20, 30, 24, 20), step=(3, 1))
    video = write_video(videos / "clip.mp4", frames, fps=10)
    engine = engine_of(tiny_checkpoint)
    with running_app([videos], lambda: engine) as server, browser_page() as page:
        page.goto(server.url())
        page.wait_for_selector("body[data-ready=true]")
        page.click("#open-video")
        page.wait_for_selector("#track-canvas[data-frame='0']")  # the page's policy forbids wait_for_function
        drag(page, (20, 30, 24, 20))  # the red target
        page.wait_for_selector("[data-target='1']")
        drag(page, (100, 70, 30, 26))  # a patch of the background
        page.wait_for_selector("[data-target='2']")
        page.click("#track-start")
        page.wait_for_selector("#track-state[data-state=done]", timeout=60_000)
        # the page followed the boxes live to the last frame
        assert page.get_attribute("#track-frame", "data-frame") == str(len(frames) - 1)
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / "app-track.png"))
        with page.expect_download() as download:
            page.click("#export-csv")
        exported = tmp_path / "app.csv"
        download.value.save_as(exported)

        rows = csv_rows(exported.read_text())
        assert len(rows) == 2 * len(frames)
        first = [row for row in rows if row[0] == 1]
        assert [row[1] for row in first] == [1, 2]
        # the boxes drawn, in the frame's pixels (whole pixels: the page rounds a drag)
        assert np.allclose([row[2:6] for row in first], [(20, 30, 24, 20), (100, 70, 30, 26)], atol=1)
        inits = [",".join(f"{v:g}" for v in row[2:6]) for row in first]
        command_line = tmp_path / "cli.csv"
        assert main(["track", str(video), "--init", inits[0], "--init", inits[1], "--output", str(command_line),
                     "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-q"]) == 0
        assert exported.read_text() == command_line.read_text()

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
