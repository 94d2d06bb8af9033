"""Several targets of one video tracked together (`track_targets`, `lorat track --init A --init B`): each target's
boxes equal the boxes it gets tracked alone; the CSV and per-target files; `--init-file`; the rendering's colours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorat_plugin.cli import main
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.data.target_files import CSV_HEADER, TargetBoxWriter, read_init_boxes, write_targets_csv
from lorat_plugin.data.video import write_video
from lorat_plugin.engine import TrackingEngine, track_frames, track_targets
from lorat_plugin.model import ModelConfig, build_model, save_checkpoint
from lorat_plugin.model.sources import load_model
from lorat_plugin.palette import target_colour

pytest.importorskip("av")

B224_WIDTHS = ModelConfig(embed_dim=768, depth=1, num_heads=12)  # B-224's width, heads and token counts
SIZE = (160, 120)
# On the target, on the background, and one partly outside the frame (clipped): three different kinds of track.
BOXES = ((30.0, 40.0, 22.0, 18.0), (100.0, 20.0, 30.0, 30.0), (-6.0, 80.0, 26.0, 30.0))


def clip(frames: int = 6) -> list[np.ndarray]:
    images, _ = moving_box_video(frames, SIZE, box=BOXES[0], step=(3, 1), seed=3, textured=True)
    return images


def b224_widths_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(B224_WIDTHS)
    with torch.no_grad():  # random, not the init's near-zero LayerScale and head: every part moves the boxes
        for name, parameter in model.named_parameters():
            if "gamma" in name:
                parameter.fill_(0.5)
            elif parameter.requires_grad:
                parameter.normal_(0, 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def b224_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(b224_widths_model(), tmp_path_factory.mktemp("b224") / "b224x1.safetensors",
                           include_backbone=True)


@pytest.mark.parametrize("which", ["B-224 widths", "demo"])
def test_each_target_equals_its_track_alone_in_one_batched_call_per_frame(which: str) -> None:
    model = b224_widths_model() if which == "B-224 widths" else load_model("demo")
    engine = TrackingEngine(model, device="cpu")
    frames = clip()
    calls = []
    track = engine.track
    engine.track = lambda states, images: calls.append(len(states)) or track(states, images)
    together = [(boxes, scores) for _, boxes, scores in track_targets(engine, frames, np.array(BOXES))]
    assert calls == [len(BOXES)] * (len(frames) - 1)  # one call per frame advances every target
    for target, box in enumerate(BOXES):
        alone = list(track_frames(engine, frames, box))
        np.testing.assert_array_equal(np.array([b[target] for b, _ in together]), np.array([b for _, b, _ in alone]))
        np.testing.assert_array_equal(np.array([s[target] for _, s in together]), np.array([s for *_, s in alone]))
    moved = np.array([b[0] for b, _ in together])
    assert np.abs(moved[-1] - moved[0]).max() > 0  # the boxes follow something: equal because tracked, not frozen
    with pytest.raises(ValueError, match="K x 4"):
        next(track_targets(engine, frames, np.zeros((0, 4))))


def rows_by_target(path: Path, targets: int) -> list[list[str]]:
    """The CSV's ``x,y,w,h,confidence`` text per target, checking the frame and target columns on the way."""
    lines = path.read_text().splitlines()
    assert lines[0] == CSV_HEADER
    by_target: list[list[str]] = [[] for _ in range(targets)]
    for row, line in enumerate(lines[1:]):
        frame, target, rest = line.split(",", 2)
        assert (int(frame), int(target)) == (row // targets + 1, row % targets + 1)
        by_target[int(target) - 1].append(rest)
    return by_target


@pytest.mark.slow  # five runs of the command: 12 s (demo) and 30 s (B-224 widths) on two cores
@pytest.mark.parametrize("which", ["B-224 widths", "demo"])
def test_cli_several_targets_give_each_the_boxes_it_gets_alone(tmp_path: Path, b224_checkpoint: Path,
                                                               which: str) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(), fps=10)
    model = ["--checkpoint", str(b224_checkpoint)] if which == "B-224 widths" else []  # the demo model: the default
    common = [*model, "--device", "cpu", "--dtype", "fp32", "--threads", "2", "-q"]
    inits = [",".join(f"{v:g}" for v in box) for box in BOXES]
    assert main(["track", str(video), *(f"--init={box}" for box in inits), "-o", str(tmp_path / "all.csv"),
                 *common]) == 0
    assert main(["track", str(video), *(f"--init={box}" for box in inits), "-o", str(tmp_path / "each.txt"),
                 *common]) == 0
    together = rows_by_target(tmp_path / "all.csv", len(BOXES))
    for target, box in enumerate(inits, start=1):
        alone = tmp_path / f"alone{target}.txt"
        assert main(["track", str(video), f"--init={box}", "-o", str(alone), *common]) == 0
        assert together[target - 1] == alone.read_text().splitlines()
        assert (tmp_path / f"each_{target}.txt").read_text() == alone.read_text()
    assert len(together[0]) == 6 and together[0][0] == "30.0000,40.0000,22.0000,18.0000,1.0000"
    assert together[2][0] == "0.0000,80.0000,20.0000,30.0000,1.0000"  # clipped to the frame


def test_csv_one_based_standard_output_and_write_targets_csv(tmp_path: Path, tiny_checkpoint: Path,
                                                             capsys) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(3), fps=10)
    common = ["--checkpoint", str(tiny_checkpoint), "-q"]
    assert main(["track", str(video), "--init", "31,41,22,18", "--init", "101,21,30,30", "--one-based",
                 "-o", str(tmp_path / "b.csv"), *common]) == 0
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[:3] == [CSV_HEADER, "1,1,31.0000,41.0000,22.0000,18.0000,1.0000",
                         "1,2,101.0000,21.0000,30.0000,30.0000,1.0000"]  # 1-based, as given
    assert len(lines) == 1 + 3 * 2 and not list(tmp_path.glob("*.partial"))
    capsys.readouterr()
    assert main(["track", str(video), "--init", "30,40,22,18", "--init", "100,20,30,30", "-o", "-", *common]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == CSV_HEADER and len(out.splitlines()) == 7  # several targets on stdout: CSV

    boxes = np.array([[0.5, 1, 2, 3], [4, 5, 6, 7]])
    written = write_targets_csv(tmp_path / "w.csv", [(np.zeros((2, 2, 3)), boxes, [0.9, 0.1]),
                                                     (5, boxes + 1, np.array([0.8, 0.2]))], one_based=True)
    assert written.read_text().splitlines() == [CSV_HEADER, "1,1,1.5000,2.0000,2.0000,3.0000,0.9000",
                                                "1,2,5.0000,6.0000,6.0000,7.0000,0.1000",
                                                "5,1,2.5000,3.0000,3.0000,4.0000,0.8000",
                                                "5,2,6.0000,7.0000,7.0000,8.0000,0.2000"]
    writer = TargetBoxWriter(tmp_path / "x.csv", 2)
    with pytest.raises(ValueError, match="expected 2 boxes"):
        writer.write(boxes[:1], [1.0])


def test_an_interrupted_several_target_run_keeps_whole_frames(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                              monkeypatch) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(5), fps=10)
    track = TrackingEngine.track
    steps = []

    def interrupted_at_the_fourth_frame(self, states, frames):
        steps.append(len(states))
        if len(steps) % 3 == 0:
            raise KeyboardInterrupt
        return track(self, states, frames)

    monkeypatch.setattr(TrackingEngine, "track", interrupted_at_the_fourth_frame)
    for output in ("b.csv", "b.txt"):
        assert main(["track", str(video), "--init", "30,40,22,18", "--init", "100,20,30,30", "--checkpoint",
                     str(tiny_checkpoint), "-o", str(tmp_path / output), "-q"]) == 130
        assert "stopped after 3 frames" in capsys.readouterr().err
    assert steps == [2] * 6  # both targets in every call
    assert len((tmp_path / "b.csv.partial").read_text().splitlines()) == 1 + 3 * 2
    assert [len((tmp_path / f"b_{i}.txt.partial").read_text().splitlines()) for i in (1, 2)] == [3, 3]
    assert not list(tmp_path.glob("b*.csv")) and not list(tmp_path.glob("b*.txt"))


def test_init_file_boxes_equal_the_same_init_flags(tmp_path: Path, tiny_checkpoint: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(3), fps=10)
    init_file = tmp_path / "targets.txt"
    init_file.write_text("# x y w h of each target\n30,40,22,18\n\n  100 20 30 30   # the second one\n")
    np.testing.assert_array_equal(read_init_boxes(init_file), [[30, 40, 22, 18], [100, 20, 30, 30]])
    common = ["--checkpoint", str(tiny_checkpoint), "-q"]
    assert main(["track", str(video), "--init-file", str(init_file), "-o", str(tmp_path / "a.csv"), *common]) == 0
    assert main(["track", str(video), "--init", "30,40,22,18", "--init", "100,20,30,30", "-o",
                 str(tmp_path / "b.csv"), *common]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("content, message", [
    ("30,40,22,18\n100,20,30\n", "targets.txt, line 2: expected four numbers x,y,w,h, got '100,20,30'"),
    ("30,40,22,18\n1,2,three,4\n", "targets.txt, line 2: expected four numbers"),
    ("# nothing here\n\n", "holds no boxes"),
    (None, "init file not found"),
    ("30,40,22,18\n500,500,10,10\n", "outside the 160x120 image"),
])
def test_a_bad_init_file_is_one_line_naming_the_file_and_line(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                              monkeypatch, content: str | None, message: str) -> None:
    video = write_video(tmp_path / "clip.mp4", clip(2), fps=10)
    init_file = tmp_path / "targets.txt"
    if content is not None:
        init_file.write_text(content)
    assert main(["track", str(video), "--init-file", str(init_file), "--checkpoint", str(tiny_checkpoint),
                 "-o", str(tmp_path / "b.csv"), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("b*"))


def test_each_target_is_drawn_in_its_palette_colour(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames = [np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)] * 2  # grey: every palette colour shows on it
    video = write_video(tmp_path / "grey.mp4", frames, fps=10)
    render = tmp_path / "r.gif"
    assert main(["track", str(video), "--init", "10,60,30,30", "--init", "90,20,40,30", "--checkpoint",
                 str(tiny_checkpoint), "-o", str(tmp_path / "b.csv"), "--render", str(render), "-q"]) == 0
    with Image.open(render) as gif:
        first = np.asarray(gif.convert("RGB")).astype(int)
    for target, (x, y, w, h) in enumerate(((10, 60, 30, 30), (90, 20, 40, 30))):
        bottom_edge = first[y + h - 1, x + 2:x + w - 2]  # the label sits on top: the bottom edge is the outline
        assert np.abs(bottom_edge - target_colour(target)).max() <= 8, target  # GIF's palette rounds a little
