"""`lorat report`'s HTML page, on generated benchmarks tracked by a real tracker, loaded in a real headless browser
(Debian's chromium; `.ci/run` installs it, so CI never skips these)."""
from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lorat_plugin.cli import main
from lorat_plugin.data.datasets import load_dataset
from lorat_plugin.evaluation import evaluate, load_results, run_benchmark, table
from lorat_plugin.evaluation.html import write_html_report

from evaluation_support import BrightBoxTracker, make_benchmark
from system_tools import CHROMIUM

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")

# Injected before the page's Content-Security-Policy: records every failed load, blocked request and error, then
# (on the load event) the images that did not decode, into an attribute that --dump-dom prints.
PROBE = """<script>var errors = [];
addEventListener('error', function (e) { errors.push(e.message || 'failed: ' + (e.target.src || '').slice(0, 50)) },
                 true);
addEventListener('securitypolicyviolation', function (e) { errors.push('blocked: ' + e.blockedURI) });
addEventListener('load', function () {
  var broken = [].filter.call(document.images, function (i) { return !i.complete || !i.naturalWidth });
  document.documentElement.setAttribute('data-probe', JSON.stringify({images: document.images.length,
    broken: broken.map(function (i) { return i.alt }), errors: errors}));
});</script>"""


def load_in_browser(page: Path, tmp_path: Path) -> dict:
    """What a browser saw loading ``page`` from a file:// URL: image count, images that did not load, errors,
    console messages."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    # a fresh profile each time: a browser still closing may hold the previous profile's lock
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, f"the page did not finish loading: {done.stderr[-2000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    seen["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return seen


def _tracked(tmp_path: Path, dataset: str, split: str | None, count: int = 4):
    root = make_benchmark(tmp_path / "data", dataset, count, length=14, split=split, size=(96, 72))
    sequences = load_dataset(dataset, root, split)
    model = {"name": "bright", "variant": "BrightBox", "weights": "0123abcd", "files": [], "precision": "fp32"}
    run_benchmark(BrightBoxTracker(offset=2.0), sequences, tmp_path / "run", tracker_name="bright", dataset=dataset,
                  split=split, root=root, progress=False, model=model, backend="numpy")
    return root, sequences


@needs_chromium
def test_the_report_page_loads_whole_in_a_browser_and_shows_the_worst_sequences(tmp_path, capsys):
    root, sequences = _tracked(tmp_path, "otb", None)
    raw = tmp_path / "raw" / "Oracle"  # another tracker's published results: ground truth, tab-separated, 1-based
    raw.mkdir(parents=True)
    for s in sequences:
        np.savetxt(raw / f"{s.name}.txt", s.boxes + [1, 1, 0, 0], fmt="%.3f", delimiter="\t")
    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "run"), str(raw), "--output", str(report),
                 "--names", "bright", "<b>oracle</b> & co"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (report / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((report / "metrics.json").read_text())
    # self-contained: every image is embedded, nothing else is referenced; every string is escaped
    assert re.findall(r"src='([a-z]+):", page) == ["data"] * page.count("src=")
    assert "href=" not in page and "<script" not in page and "<b>oracle" not in page
    assert "&lt;b&gt;oracle&lt;/b&gt; &amp; co" in page
    # the table, the three plots, every sequence worst first by AUC, and strips of the 4 worst (all of them)
    bright = metrics["trackers"]["bright"]
    assert f"<td>{100 * bright['ope']['auc']:.2f}</td>" in page and "<th>model</th>" in page
    assert "<td>BrightBox, weights 0123abcd, fp32, backend numpy</td>" in page  # the raw results: "-"
    assert page.count("src='data:image/png") == 3
    order = sorted(bright["sequences"], key=lambda s: bright["sequences"][s]["auc"])
    positions = [page.index(f"<tr><td>{s}</td>") for s in order]
    assert positions == sorted(positions) and len(set(bright["sequences"][s]["auc"] for s in order)) > 1
    assert [m for m in re.findall(r"<h3>([^<]+)</h3>", page)] == order
    assert page.count("src='data:image/jpeg") == 4 * 6

    seen = load_in_browser(report / "report.html", tmp_path)
    assert seen["images"] == 3 + 4 * 6 and seen["broken"] == [] and seen["errors"] == [] and seen["console"] == []

    # the benchmark moved after its sequences were read: the page says so instead of the strips, and loads cleanly
    trackers = [load_results(tmp_path / "run", "otb", sequences), load_results(raw, "otb", sequences)]
    result = evaluate("otb", sequences, trackers)
    root.rename(tmp_path / "elsewhere")
    moved = write_html_report(result, tmp_path / "moved", sequences, trackers)
    assert moved.read_text().count("No strip: [Errno 2] No such file or directory: ") == 4
    assert "image/jpeg" not in moved.read_text()
    seen = load_in_browser(moved, tmp_path)
    assert seen["images"] == 3 and seen["broken"] == [] and seen["errors"] == [] and seen["console"] == []


@needs_chromium
def test_the_browser_check_catches_broken_images_and_blocked_requests(tmp_path):
    page = tmp_path / "bad.html"
    good = tmp_path / "good.html"
    bad = ("<img alt=bad src='data:image/png;base64,AAAA'><img alt=net src='http://example.com/x.png'>"
           "<script>x()</script>")
    for path, body in ((page, bad), (good, "<p>nothing</p>")):
        path.write_text("<!DOCTYPE html><html><head><meta http-equiv=Content-Security-Policy content=\"default-src "
                        f"'none'; img-src data:\"></head><body>{body}</body></html>")
    seen = load_in_browser(page, tmp_path)
    assert seen["images"] == 2 and seen["broken"] == ["bad", "net"]
    assert "blocked: http://example.com/x.png" in seen["errors"] and len(seen["console"]) >= 2
    assert load_in_browser(good, tmp_path) == {"images": 0, "broken": [], "errors": [], "console": []}


def test_got10k_page_footer_strip_count_and_no_plots(tmp_path):
    root, sequences = _tracked(tmp_path, "got10k", "val", count=3)
    trackers = [load_results(tmp_path / "run", "got10k", sequences)]
    result = evaluate("got10k", sequences, trackers, split="val")
    path = write_html_report(result, tmp_path / "page", sequences, trackers,
                             strips=1, frames_per_strip=3, footer=["LoRAT-demo: <tiny> & trained from scratch"])
    page = path.read_text()
    seq_wise = result["trackers"]["bright"]["got10k"]["seq_wise"]
    worst = min(seq_wise, key=lambda s: seq_wise[s]["ao"])
    assert re.findall(r"<h3>([^<]+)</h3>", page) == [worst] and page.count("image/jpeg") == 3
    assert "worst first by AO" in page and "<p>LoRAT-demo: &lt;tiny&gt; &amp; trained from scratch</p>" in page
    # the speed is table.txt's FPS per sequence, got10k's speed_fps beside it with its definition, and how it ran
    fps_cell = f"<td>{result['trackers']['bright']['fps']:.1f}</td>"
    text_row = table(result).splitlines()[2].split()
    header = table(result).splitlines()[1].split()
    assert header[1:8] == ["AO", "SR0.5", "SR0.75", "AUC", "P_norm", "P", "FPS"]  # the OPE columns beside AO/SR
    assert fps_cell in page and text_row[7] == fps_cell[4:-5]
    assert "<p class=note>FPS: frames per second per sequence" in page
    assert "<p class=note>speed_fps: the got10k toolkit&#x27;s figure, the mean of per-frame 1/t" in page
    assert "<p class=note>bright ran on: " in page
    assert (tmp_path / "page" / "success_plot.png").is_file()  # rendered here: no write_report before
    next(s for s in sequences if s.name == worst).frames[-1].write_bytes(b"not a JPEG")  # a damaged frame
    page = write_html_report(result, tmp_path / "page", sequences, trackers, strips=1).read_text()
    assert "No strip: cannot identify image file" in page and "image/jpeg" not in page
    assert main(["report", str(tmp_path / "run"), "--no-plots", "--output", str(tmp_path / "none")]) == 0
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["metrics.json", "table.txt"]


class ShiftedTruth:
    """A batch tracker that answers the ground truth shifted by ``shift`` px (the previous box where there is
    none): each tracker of a report draws its boxes apart from the others'."""

    def __init__(self, sequences, shift: float):
        self.truths = [s.boxes for s in sequences]
        self.shift = np.array([shift, shift, 0.0, 0.0])

    def initialize(self, frames, boxes):
        states = []
        for box in boxes:
            truth = next(t for t in self.truths if np.allclose(t[0], box))
            states.append({"truth": truth, "index": 0, "box": np.asarray(box, dtype=np.float64)})
        return states

    def track(self, states, frames):
        for state in states:
            state["index"] += 1
            box = state["truth"][state["index"]]
            if np.all(np.isfinite(box)) and box[2] > 0:
                state["box"] = box + self.shift
        return np.array([s["box"] for s in states]), np.ones(len(states))


def _near(pixels: np.ndarray, colour, tolerance: float) -> np.ndarray:
    return np.abs(pixels[..., :3].astype(float) - np.asarray(colour, dtype=float)).max(axis=-1) <= tolerance


def _embedded_images(page: str, mime: str) -> list[np.ndarray]:
    import base64
    import io

    from PIL import Image

    found = re.findall(rf"src='data:{mime};base64,([^']+)'", page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")) for data in found]


@needs_chromium
def test_screenshot_shows_each_tracker_in_its_palette_colour_and_the_challenge_table(tmp_path):
    """The procedural benchmark (its challenges in meta_info.ini) tracked by three trackers: the page, rendered by
    chromium, holds each tracker's palette colour (legend swatches, plot lines, strip boxes) by the trackers'
    order and no colour of a fourth; the plots are drawn for page scale; a table scores every challenge."""
    pytest.importorskip("skimage")
    from lorat_plugin.demo.procedural import make_benchmark as make_procedural
    from lorat_plugin.palette import tracker_colour, tracker_colours

    bench = make_procedural(tmp_path / "bench", sequences=4, frames=12, size=(160, 120), seed=1)
    sequences = load_dataset("procedural", bench.root, split="test")
    names = ["near", "farther", "farthest"]
    trackers = []
    for shift, name in zip((2.0, 6.0, 12.0), names):
        run_benchmark(ShiftedTruth(sequences, shift), sequences, tmp_path / name, tracker_name=name, dataset="got10k",
                      split="val", root=bench.root, progress=False)
        trackers.append(load_results(tmp_path / name, "got10k", sequences, name=name))
    result = evaluate("got10k", sequences, trackers, split="val")
    page_path = write_html_report(result, tmp_path / "page", sequences, trackers, strips=2, frames_per_strip=4)
    page = page_path.read_text()
    colours = tracker_colours(names)
    unused = tracker_colour(len(names))

    # the OPE columns beside AO/SR, and a row per challenge of the sequences
    assert "<th>AUC</th><th>P_norm</th><th>P</th>" in page.replace("<th>SR0.75</th>", "")
    challenges = sorted({c for s in sequences for c, has in s.attributes["challenges"].items() if has})
    assert challenges and "per challenge" in page
    for challenge in challenges:
        assert f"<tr><td>{challenge}</td>" in page
    # frames numbered as GOT-10k's files: the strips never show frame 0
    assert "frame 0," not in page and "frame numbers as in the files (first: 1)" in page

    plots = _embedded_images(page, "image/png")
    assert plots and all(p.shape[:2] == (480, 640) for p in plots[:1])  # 100 dpi, shown at its own size
    for plot in plots:
        for name, colour in colours.items():
            assert _near(plot, colour, 10).sum() > 100, name
        assert _near(plot, unused, 10).sum() == 0
    strips = _embedded_images(page, "image/jpeg")
    for name, colour in colours.items():  # JPEG: looser, yet far from the other colours
        assert any(_near(frame, colour, 45).sum() > 20 for frame in strips), name

    screenshot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    "--force-device-scale-factor=1", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
                    f"--screenshot={screenshot}", "--window-size=1400,4000", page_path.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    shot = np.asarray(Image.open(screenshot).convert("RGB"))
    for name, colour in colours.items():  # swatches (14 x 14), plot lines, as the browser painted them
        assert _near(shot, colour, 4).sum() > 14 * 14, name
    assert _near(shot, unused, 4).sum() < 14 * 14 // 2
