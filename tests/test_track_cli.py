"""`lorat track` on a generated video file, a frame folder and an image list; renderings; errors; frame sources."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorat_plugin.cli import main
from lorat_plugin.data import FrameError
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.data.video import VideoWriter, draw_boxes, open_frames, write_video

pytest.importorskip("av")

SIZE = (96, 64)  # even sides: H.264 keeps them exactly


def target_frames(n: int = 8, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Noise that is never green with a red target moving right."""
    return moving_box_video(n, SIZE, box=(12, 20, 18, 16), step=(3, 0), seed=seed)


def read_boxes(path: Path) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    assert rows.shape[1] == 5
    return rows


def green_edge_fraction(frame: np.ndarray, box: np.ndarray) -> float:
    """Share of the box outline's pixels that are clearly green (the frames themselves contain no green)."""
    x, y, w, h = np.round(box).astype(int)
    x2, y2 = min(x + w - 1, frame.shape[1] - 1), min(y + h - 1, frame.shape[0] - 1)
    edge = np.concatenate((frame[y, x:x2 + 1], frame[y2, x:x2 + 1], frame[y:y2 + 1, x], frame[y:y2 + 1, x2]))
    edge = edge.astype(int)
    return float(np.mean((edge[:, 1] > 150) & (edge[:, 0] < 100) & (edge[:, 2] < 100)))


def test_track_a_video_file_and_render_a_gif(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames, truth = target_frames()
    video = write_video(tmp_path / "clip.mp4", frames, fps=12)
    output, render = tmp_path / "boxes.txt", tmp_path / "tracked.gif"
    code = main(["track", str(video), "--init", ",".join(f"{v:g}" for v in truth[0]), "--checkpoint",
                 str(tiny_checkpoint), "--device", "cpu", "--output", str(output), "--render", str(render), "-q"])
    assert code == 0
    rows = read_boxes(output)
    assert len(rows) == len(frames)
    np.testing.assert_allclose(rows[0], [*truth[0], 1.0])
    assert np.all((rows[:, 4] >= 0) & (rows[:, 4] <= 1)) and np.all(rows[:, 2:4] >= 0)
    with Image.open(render) as gif:
        assert gif.n_frames == len(frames) and gif.size == SIZE
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(5)
        sixth = np.asarray(gif.convert("RGB"))
    assert green_edge_fraction(first, rows[0, :4]) > 0.9  # the init box is drawn where it belongs
    assert green_edge_fraction(sixth, rows[5, :4]) > 0.9
    assert green_edge_fraction(frames[5], rows[5, :4]) == 0


def test_track_a_frame_folder_with_a_gt_file_and_render_a_video(tmp_path: Path, tiny_checkpoint: Path,
                                                              monkeypatch) -> None:
    frames, truth = target_frames(6, seed=1)
    folder = tmp_path / "seq" / "img"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):  # 1..6 (natural order: frame 10 would come after 9)
        Image.fromarray(frame).save(folder / f"{i}.png")
    gt = tmp_path / "seq" / "groundtruth_rect.txt"
    np.savetxt(gt, truth + (1, 1, 0, 0), fmt="%d", delimiter="\t")  # 1-based, tab separated, as OTB
    render = tmp_path / "out.mp4"
    monkeypatch.chdir(tmp_path)
    assert main(["track", str(folder), "--gt", str(gt), "--one-based", "--checkpoint", str(tiny_checkpoint),
                 "--render", str(render), "--fps", "10", "-q"]) == 0
    rows = read_boxes(tmp_path / "img_boxes.txt")  # default output name, in the current folder
    assert len(rows) == 6
    np.testing.assert_allclose(rows[0, :4], truth[0] + (1, 1, 0, 0))  # written back 1-based
    rendered = list(open_frames(render))
    assert len(rendered) == 6 and rendered[0].shape == frames[0].shape
    # H.264 blurs colours a little, so the drawn outline is checked loosely.
    assert green_edge_fraction(rendered[3], rows[3, :4] - (1, 1, 0, 0)) > 0.6


def test_track_an_image_list_to_stdout(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    frames, truth = target_frames(4, seed=2)
    names = []
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"f{i}.jpg", quality=95)
        names.append(f"f{i}.jpg")
    listing = tmp_path / "frames.txt"
    listing.write_text("# frames of a test\n" + "\n".join(names) + "\n\n")
    assert main(["track", str(listing), "--init", "12 20 18 16", "--checkpoint", str(tiny_checkpoint),
                 "-o", "-", "-q"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 4 and lines[0] == "12.0000,20.0000,18.0000,16.0000,1.0000"
    assert "4 frames" in captured.err


@pytest.mark.parametrize("arguments, message", [
    (["--init", "1,2,3"], "four numbers"),
    (["--init", "0,0,0,10"], "zero or negative size"),
    (["--init", "500,500,10,10"], "outside"),
])
def test_bad_init_boxes_are_one_clear_line(tmp_path: Path, tiny_checkpoint: Path, capsys, arguments,
                                           message: str) -> None:
    frames, _ = target_frames(2)
    write_video(tmp_path / "clip.mp4", frames)
    code = main(["track", str(tmp_path / "clip.mp4"), *arguments, "--checkpoint", str(tiny_checkpoint),
                 "-o", str(tmp_path / "b.txt"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "b.txt").exists()


def test_missing_and_unreadable_frames_are_named(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    assert main(["track", str(tmp_path / "nowhere.mp4"), "--init", "1,1,5,5", "-q"]) == 2
    assert "nowhere.mp4" in capsys.readouterr().err
    frames, truth = target_frames(3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    (folder / "0001.png").write_bytes(b"not a png")
    render = tmp_path / "r.gif"
    assert main(["track", str(folder), "--init", "12,20,18,16", "--checkpoint", str(tiny_checkpoint),
                 "--render", str(render), "-o", str(tmp_path / "b.txt"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "0001.png" in err and "Traceback" not in err
    assert not render.exists() and not list(tmp_path.glob(".*partial*"))  # nothing half-written is left
    listing = tmp_path / "list.txt"
    listing.write_text("frames/0000.png\nframes/missing.png\n")
    with pytest.raises(FrameError, match="missing.png"):
        list(open_frames(listing))
    with pytest.raises(FrameError, match="no image files"):
        open_frames(tmp_path / "frames" / ".." / "frames" / "..")  # tmp_path holds no images itself


def test_frame_sources_and_writers_round_trip(tmp_path: Path) -> None:
    frames, truth = target_frames(5)
    for suffix in (".mp4", ".avi", ".gif"):
        path = write_video(tmp_path / f"v{suffix}", frames, fps=8)
        if suffix == ".gif":
            with Image.open(path) as gif:
                assert gif.n_frames == 5
            continue
        source = open_frames(path)
        decoded = list(source)
        assert len(decoded) == 5 and source.fps == pytest.approx(8)
        assert np.abs(decoded[2].astype(int) - frames[2]).mean() < 12  # lossy, but the same picture
    drawn = draw_boxes(frames[0], [truth[0]], labels=["0.91"])
    assert green_edge_fraction(drawn, truth[0]) == 1.0 and np.array_equal(frames[0], target_frames(1)[0][0])
    with pytest.raises(ValueError, match="extension"):
        VideoWriter(tmp_path / "out.xyz")


def frame_folder(folder: Path, n: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    frames, truth = target_frames(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"{i:08d}.png")
    return folder, truth


def track(tmp_path: Path, checkpoint: Path, source: Path, *extra: str) -> int:
    start = [] if "--gt" in extra else ["--init", "12,20,18,16"]
    return main(["track", str(source), *start, "--checkpoint", str(checkpoint), "-q", *extra])


def test_finished_boxes_survive_a_decode_error_and_ctrl_c(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                          monkeypatch) -> None:
    import lorat_plugin.data.video as video

    folder, _ = frame_folder(tmp_path / "img", 6)
    output = tmp_path / "out" / "boxes.txt"
    partial = output.with_name("boxes.txt.partial")
    (folder / "00000005.png").write_bytes(b"truncated")
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(output)) == 2
    err = capsys.readouterr().err
    assert "stopped after 4 frames" in err and str(partial) in err and "00000005.png" in err
    assert not output.exists() and len(read_boxes(partial)) == 4

    frame_folder(folder, 6)  # repaired; Ctrl-C at the third frame this time
    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return video_read_image(path)

    video_read_image = video.read_image
    monkeypatch.setattr(video, "read_image", interrupted)
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(output)) == 130
    err = capsys.readouterr().err
    assert "stopped after 2 frames" in err and "interrupted" in err
    assert not output.exists() and len(read_boxes(partial)) == 2  # the stale 4 boxes were replaced
    monkeypatch.undo()

    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(output)) == 0  # the next run finishes the job
    assert len(read_boxes(output)) == 6 and not partial.exists()


@pytest.mark.parametrize("case, message", [
    ("output is a folder", "is a folder"),
    ("render is a folder", "is a folder"),
    ("frame folder with a gap", "00000003.png is missing"),
    ("ground truth missing", "ground-truth file not found"),
    ("ground truth with a bad line", "gt.txt, line 2: expected 4 numbers"),
])
def test_bad_outputs_and_gaps_are_refused_before_tracking(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                          monkeypatch, case: str, message: str) -> None:
    import lorat_plugin.engine as engine

    folder, _ = frame_folder(tmp_path / "img", 5)
    (tmp_path / "taken").mkdir()
    extra = {"output is a folder": ["-o", str(tmp_path / "taken")],
             "render is a folder": ["-o", str(tmp_path / "b.txt"), "--render", str(tmp_path / "taken")]}.get(case, [])
    if case == "frame folder with a gap":
        (folder / "00000003.png").unlink()
    if case.startswith("ground truth"):
        if case.endswith("line"):
            (tmp_path / "gt.txt").write_text("12,20,18,16\n13,20,18\n")
        extra = ["--gt", str(tmp_path / "gt.txt")]
    monkeypatch.setattr(engine, "TrackingEngine", None)  # tracking would fail loudly: the refusal comes first
    assert track(tmp_path, tiny_checkpoint, folder, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "img_boxes.txt").exists()


def test_a_stale_render_after_sigkill_is_replaced(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder, _ = frame_folder(tmp_path / "img", 3)
    render = tmp_path / "r.mp4"
    stale = tmp_path / ".r.partial.mp4"  # what a killed run leaves
    stale.write_bytes(b"half a video")
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(tmp_path / "b.txt"), "--render", str(render)) == 0
    assert not stale.exists() and len(list(open_frames(render))) == 3
    stale.write_bytes(b"half a video")
    (folder / "00000002.png").write_bytes(b"broken")  # a failing run removes it too
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(tmp_path / "c.txt"), "--render", str(render)) == 2
    assert not stale.exists()


def test_a_truncated_video_is_tracked_with_a_warning(tmp_path: Path, tiny_checkpoint: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(30)]
    whole = write_video(tmp_path / "whole.mkv", frames, fps=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    assert len(open_frames(cut)) == 30  # from the container's duration: mkv declares no frame count
    assert track(tmp_path, tiny_checkpoint, cut, "-o", str(tmp_path / "b.txt")) == 0
    decoded = len(read_boxes(tmp_path / "b.txt"))
    assert 0 < decoded < 30
    assert f"{cut}: the container declares 30 frames but only {decoded} could be decoded" in caplog.text
    caplog.clear()
    assert len(list(open_frames(whole))) == 30 and "declares" not in caplog.text
    mp4 = write_video(tmp_path / "whole.mp4", frames[:8], fps=10)  # its index is written last: cut, it is lost
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[:mp4.stat().st_size // 2])
    with pytest.raises(FrameError, match="cannot open video .*cut.mp4"):
        open_frames(tmp_path / "cut.mp4")


@pytest.mark.parametrize("init", [["--init", "-5,-5,40,40"], ["--init", "-5 -5 40 40"], ["--init=-5,-5,40,40"]])
def test_an_init_box_with_a_leading_minus_is_accepted(tmp_path: Path, tiny_checkpoint: Path, init) -> None:
    folder, _ = frame_folder(tmp_path / "img", 2)
    assert main(["track", str(folder), *init, "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "b.txt"),
                 "-q"]) == 0
    np.testing.assert_allclose(read_boxes(tmp_path / "b.txt")[0, :4], [0, 0, 35, 35])  # clipped to the image


def test_16_bit_frames_track_like_their_8_bit_picture(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames, _ = target_frames(4)
    outputs = []
    for bits in (8, 16):
        folder = tmp_path / f"img{bits}"
        folder.mkdir()
        for i, frame in enumerate(frames):
            gray = frame[..., 0].astype(np.uint16) * 257 if bits == 16 else frame[..., 0]
            Image.fromarray(gray).save(folder / f"{i:04d}.png")  # PIL writes 16-bit grayscale PNGs (mode I;16)
        outputs.append(tmp_path / f"b{bits}.txt")
        assert track(tmp_path, tiny_checkpoint, folder, "-o", str(outputs[-1])) == 0
    assert outputs[0].read_text() == outputs[1].read_text()


def can_mount_a_private_tmpfs() -> bool:
    """Whether `unshare -rm` may mount a tmpfs (a user namespace: root not needed where the kernel allows it)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_a_private_tmpfs(), reason="cannot mount a tmpfs in a user namespace here")
def test_a_full_disk_names_the_file_and_leaves_no_empty_file(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """On a 16 KiB tmpfs: with one page free the run stops when it fills up and keeps the whole lines written;
    with nothing free it fails naming the file and leaves nothing."""
    folder, _ = frame_folder(tmp_path / "img", 8)
    for i in range(9, 121):  # 120 lines of ~40 bytes: more than the one free page
        shutil.copy(folder / f"{(i - 1) % 8 + 1:08d}.png", folder / f"{i:08d}.png")
    disk = tmp_path / "disk"
    disk.mkdir()
    track_to_disk = (f"{shlex.quote(sys.executable)} -m lorat_plugin.cli track {shlex.quote(str(folder))} "
                     f"--init 12,20,18,16 --checkpoint {shlex.quote(str(tiny_checkpoint))} -q -o {disk}/boxes.txt")
    script = f"""
        mount -t tmpfs -o size=16k tmpfs {disk}
        head -c 12288 /dev/zero > {disk}/filler
        {track_to_disk} 2> {tmp_path}/err1; echo $? > {tmp_path}/code1
        ls -A {disk} > {tmp_path}/ls1; cp {disk}/boxes.txt.partial {tmp_path}/kept.partial
        rm {disk}/boxes.txt.partial; head -c 4096 /dev/zero > {disk}/filler2
        {track_to_disk} 2> {tmp_path}/err2; echo $? > {tmp_path}/code2
        ls -A {disk} > {tmp_path}/ls2
    """
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=600)

    def result(run: int) -> tuple[int, str, list[str]]:
        return (int((tmp_path / f"code{run}").read_text()), (tmp_path / f"err{run}").read_text(),
                sorted((tmp_path / f"ls{run}").read_text().split()))

    code, err, files = result(1)
    assert code == 2 and "Traceback" not in err, err
    assert f"cannot write {disk}/boxes.txt.partial: No space left on device" in err
    assert files == ["boxes.txt.partial", "filler"]  # no temporary file, no output
    kept = read_boxes(tmp_path / "kept.partial")  # every line whole
    assert 50 < len(kept) < 120 and f"stopped after {len(kept)} frames" in err

    code, err, files = result(2)
    assert code == 2 and f"cannot write {disk}/boxes.txt.partial: No space left on device" in err, err
    assert len(err.strip().splitlines()) == 1 and files == ["filler", "filler2"]  # no empty .partial


def test_a_rerun_that_fails_on_frame_1_keeps_the_previous_partial(tmp_path: Path, tiny_checkpoint: Path,
                                                                  capsys) -> None:
    folder, _ = frame_folder(tmp_path / "img", 5)
    output = tmp_path / "boxes.txt"
    partial = tmp_path / "boxes.txt.partial"
    (folder / "00000004.png").write_bytes(b"broken")
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(output)) == 2
    earlier = partial.read_text()
    assert len(read_boxes(partial)) == 3

    (folder / "00000001.png").write_bytes(b"broken")  # the rerun fails before its first box
    assert track(tmp_path, tiny_checkpoint, folder, "-o", str(output)) == 2
    err = capsys.readouterr().err
    assert "00000001.png" in err and "Traceback" not in err
    assert partial.read_text() == earlier and not output.exists()
    assert [p.name for p in tmp_path.glob("*boxes.txt*")] == ["boxes.txt.partial"]  # no temporary file left


def test_a_video_the_decoder_conceals_damage_in_is_reported(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                            caplog) -> None:
    """400 bytes overwritten inside the keyframe: FFmpeg conceals the broken blocks and decodes every frame without
    an error; the errors it logs are counted, warned once and named in the run's summary."""
    import av

    frames, _ = moving_box_video(40, SIZE, box=(12, 20, 18, 16), step=(1, 0), seed=0)
    whole = write_video(tmp_path / "whole.mp4", frames, fps=10)
    with av.open(str(whole)) as container:
        keyframe = max((packet for packet in container.demux(container.streams.video[0]) if packet.size),
                       key=lambda packet: packet.size)
        start, size = keyframe.pos + keyframe.size // 3, keyframe.size
    assert size > 1200  # the damage stays inside the keyframe's data
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(whole.read_bytes())
    data[start:start + 400] = bytes(range(200)) * 2
    damaged.write_bytes(bytes(data))

    source = open_frames(damaged)
    decoded = list(source)
    assert len(decoded) == 40 and source.decode_errors > 0  # every frame back, the damage counted
    assert any(not np.array_equal(a, b) for a, b in zip(decoded, open_frames(whole)))
    caplog.clear()

    assert track(tmp_path, tiny_checkpoint, damaged, "-o", str(tmp_path / "b.txt")) == 0
    warnings = [r.getMessage() for r in caplog.records if "the decoder reported" in r.getMessage()]
    assert len(warnings) == 1 and f"{damaged}: the decoder reported {source.decode_errors} errors" in warnings[0]
    assert f"{source.decode_errors} decoder errors concealed" in capsys.readouterr().err
    assert len(read_boxes(tmp_path / "b.txt")) == 40
    caplog.clear()

    assert track(tmp_path, tiny_checkpoint, whole, "-o", str(tmp_path / "c.txt")) == 0
    assert "the decoder reported" not in caplog.text and "decoder errors" not in capsys.readouterr().err
