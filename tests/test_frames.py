"""Frames of every dtype reach the tracker as the picture they hold, or are refused in one line;
a numbered frame folder with a gap is refused; a video's frames from a late start, found by a seek, are those of a
decode from the first frame."""
from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lorat_plugin.data import FrameError, read_image, to_rgb
from lorat_plugin.data.video import open_frames

RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # the 8-bit picture every variant below encodes
GRAY = PICTURE[..., 0]


def png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (PIL writes 16-bit grayscale but no 16-bit RGB): H x W (x 3) uint16."""
    height, width = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("name, frame", [
    ("uint8", PICTURE),
    ("uint16 (v * 257)", PICTURE.astype(np.uint16) * 257),
    ("uint16 big-endian", (PICTURE.astype(np.uint16) * 257).astype(">u2")),
    ("uint16 high byte only (v << 8)", PICTURE.astype(np.uint16) << 8),
    ("int64 holding 0..255", PICTURE.astype(np.int64)),
    ("uint32 holding 0..255", PICTURE.astype(np.uint32)),
    ("float 0..1", PICTURE / 255.0),
    ("float32 0..255", PICTURE.astype(np.float32)),
    ("RGBA", np.dstack((PICTURE, np.full(GRAY.shape, 7, np.uint8)))),
    ("PIL RGB", Image.fromarray(PICTURE)),
])
def test_frames_of_every_dtype_give_the_same_picture(name: str, frame) -> None:
    rgb = to_rgb(frame)
    assert rgb.dtype == np.uint8 and rgb.shape == PICTURE.shape
    tolerance = 1 if "<< 8" in name else 0  # (v << 8) / 257 rounds to v or v - 1
    assert np.abs(rgb.astype(int) - PICTURE).max() <= tolerance, name


@pytest.mark.parametrize("name, frame", [
    ("uint16 gray", GRAY.astype(np.uint16) * 257),
    ("PIL I;16", Image.fromarray(GRAY.astype(np.uint16) * 257)),
    ("PIL F (0..1)", Image.fromarray((GRAY / 255.0).astype(np.float32))),
    ("PIL I (int32 0..255)", Image.fromarray(GRAY.astype(np.int32))),
])
def test_gray_frames_of_every_dtype_give_the_same_picture(name: str, frame) -> None:
    np.testing.assert_array_equal(to_rgb(frame), np.repeat(GRAY[..., None], 3, axis=2), err_msg=name)


@pytest.mark.parametrize("frame, message", [
    (GRAY > 128, "bool"),
    (np.full((4, 4), 300, np.int64), "outside 0..255"),
    (np.full((4, 4), -1, np.int16), "outside 0..255"),
    (Image.fromarray(np.full((4, 4), 70000, np.int32)), "outside 0..255"),
    (np.full((4, 4), np.nan), "NaN"),
    (np.full((4, 4), 1 + 1j), "complex"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
])
def test_arrays_that_are_no_image_are_refused_in_one_line(frame, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        to_rgb(frame)
    assert "\n" not in str(error.value)


def test_16_bit_png_files_are_scaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(tmp_path / "gray16.png")  # PIL's own 16-bit writer
    with Image.open(tmp_path / "gray16.png") as image:
        assert image.mode.startswith("I")  # the mode PIL used to clip to white on conversion
    np.testing.assert_array_equal(read_image(tmp_path / "gray16.png")[..., 1], GRAY)
    rgb16 = png16(tmp_path / "rgb16.png", PICTURE.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(rgb16), PICTURE)
    np.testing.assert_array_equal(read_image(png16(tmp_path / "g.png", GRAY.astype(np.uint16) * 257))[..., 2], GRAY)


def test_a_32_bit_tiff_beyond_8_bits_is_a_frame_error_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 4000, np.int32)).save(tmp_path / "deep.tif")
    with pytest.raises(FrameError, match="deep.tif.*outside 0..255"):
        read_image(tmp_path / "deep.tif")


def test_16_bit_frames_track_like_their_8_bit_picture(tmp_path: Path, tiny_config) -> None:
    """Through the API (TrackingEngine), the got10k tracker (PIL images and paths) and the TraX frame reader."""
    import torch

    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config).eval()
    engine = TrackingEngine(model, device="cpu", dtype="fp32")
    frames8 = [np.roll(PICTURE, 2 * i, axis=1) for i in range(3)]
    frames16 = [f.astype(np.uint16) * 257 for f in frames8]
    box = np.array((8.0, 6.0, 10.0, 9.0))

    def run(frames) -> np.ndarray:
        state = engine.initialize([frames[0]], box[None])[0]
        return np.stack([engine.track([state], [frame])[0][0] for frame in frames[1:]])

    expected = run(frames8)
    np.testing.assert_array_equal(run(frames16), expected)
    np.testing.assert_array_equal(run([(f / 65535.0).astype(np.float32) for f in frames16]), expected)

    got10k = pytest.importorskip("lorat_plugin.trackers.got10k")
    paths = [png16(tmp_path / f"{i}.png", f) for i, f in enumerate(frames16)]
    for images in (paths, [Image.open(p) for p in paths]):
        tracker = got10k.LoRATTracker(model, device="cpu", dtype="fp32")
        tracker.init(images[0], box)
        np.testing.assert_array_equal(np.stack([tracker.update(image) for image in images[1:]]), expected)

    from lorat_plugin.trackers.trax_server import read_frame
    np.testing.assert_array_equal(read_frame({"color": SimpleNamespace(path=lambda: str(paths[1]))}), frames8[1])


@pytest.mark.parametrize("names, message", [
    ([f"{i:08d}.jpg" for i in range(1, 31) if i != 15], "00000015.jpg is missing"),
    ([f"img{i}.png" for i in (1, 2, 3, 5)], "img4.png is missing"),
    (["0001.png", "1.png", "0002.png"], "have the same number"),
])
def test_a_numbered_frame_folder_with_a_gap_is_refused(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        Image.fromarray(PICTURE).save(tmp_path / name)
    with pytest.raises(FrameError, match=message) as error:
        open_frames(tmp_path)
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    listing = tmp_path / "frames.txt"  # the way to track them anyway
    listing.write_text("\n".join(names))
    assert len(open_frames(listing)) == len(names)


@pytest.mark.parametrize("names", [
    [f"{i:08d}.jpg" for i in range(1, 12)],  # no gap, across a digit
    [f"{i}.png" for i in range(8, 12)],  # unpadded
    ["a.png", "b.png", "cover.png"],  # not numbered
    ["left1.png", "right7.png"],  # two series: nothing to check
])
def test_frame_folders_without_a_gap_open(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        Image.fromarray(PICTURE).save(tmp_path / name)
    assert [f.name for f in open_frames(tmp_path).files] == names


def test_frame_none_in_the_python_api_says_the_frame_is_missing(tiny_config) -> None:
    """cv2.imread of a missing file returns None: TrackingEngine and LoRATTracker say a frame is missing, in one line
    (not "expected an H x W ... got shape ()")."""
    import torch

    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.model import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config).eval()
    engine = TrackingEngine(model, device="cpu", dtype="fp32")
    box = np.array((8.0, 6.0, 10.0, 9.0))
    calls = {
        "TrackingEngine.initialize": lambda: engine.initialize([None], box[None]),
        "TrackingEngine.track": lambda: engine.track(engine.initialize([PICTURE], box[None]), [None]),
    }
    got10k = pytest.importorskip("lorat_plugin.trackers.got10k")
    tracker = got10k.LoRATTracker(model, device="cpu", dtype="fp32")
    calls["LoRATTracker.init"] = lambda: tracker.init(None, box)

    def update_after_init() -> None:
        tracker.init(PICTURE, box)
        tracker.update(None)

    calls["LoRATTracker.update"] = update_after_init
    for name, call in calls.items():
        with pytest.raises(ValueError, match="the frame is missing") as error:
            call()
        assert "\n" not in str(error.value) and "shape" not in str(error.value), name
        if name.startswith("LoRATTracker"):
            assert str(error.value).startswith(f"{name}: "), name


# ---- seeking in a video: the frames from a late start are those of a decode from the first frame ----

GOP = 10  # a keyframe every 10 frames: several per test video


def encoded_video(path: Path, frames: list[np.ndarray], *, codec: str = "libx264", options: dict | None = None,
                  frame_times_ms: list[int] | None = None) -> Path:
    """``frames`` encoded by PyAV with a keyframe every ``GOP`` frames and the codec's B-frames (libx264's default:
    3). ``frame_times_ms``: each frame's presentation time, for a variable frame rate; else 25 fps. The container
    follows the suffix (raw ``.h264``: an elementary stream, without timestamps)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="h264" if path.suffix == ".h264" else None) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.options = options or {}
        if frame_times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for number, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if frame_times_ms is not None:
                picture.pts, picture.time_base = frame_times_ms[number], Fraction(1, 1000)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def picture_types(path: Path) -> list[str]:
    """Each frame's type as the decoder reports it (I, P, B)."""
    import av
    from av.video.frame import PictureType

    with av.open(str(path)) as container:
        return [PictureType(frame.pict_type).name for frame in container.decode(container.streams.video[0])]


@pytest.fixture
def decoded_frames(monkeypatch) -> list[int]:
    """Every frame PyAV decodes from now on appends its timestamp here (``av.open`` wrapped): the decoding work."""
    import av

    decoded: list[int] = []
    open_container = av.open

    class Counted:
        def __init__(self, container) -> None:
            self._container = container

        def __getattr__(self, name: str):
            return getattr(self._container, name)

        def __enter__(self) -> "Counted":
            return self

        def __exit__(self, *exc) -> None:
            self._container.close()

        def decode(self, *streams):
            for frame in self._container.decode(*streams):
                decoded.append(frame.pts)
                yield frame

    monkeypatch.setattr(av, "open", lambda *args, **kwargs: Counted(open_container(*args, **kwargs)))
    return decoded


def textured_clip(frames: int = 45) -> list[np.ndarray]:
    """A moving textured target: every frame differs from the one before, so a frame off by one shows."""
    from lorat_plugin.data.synthetic import moving_box_video

    return moving_box_video(frames, (96, 64), step=(1.0, 0.5), textured=True)[0]


VARIABLE_TIMES = [sum(40 if k % 3 else 13 for k in range(n)) for n in range(45)]  # 13 and 40 ms apart


@pytest.mark.parametrize("name, codec, options, times", [
    ("clip.mp4", "libx264", None, None),
    ("variable.mkv", "libx264", None, VARIABLE_TIMES),
    ("variable.mp4", "libx264", None, VARIABLE_TIMES),
    ("open_gop.mp4", "libx264", {"x264-params": "open-gop=1"}, None),
    ("clip.ts", "libx264", None, None),  # its seeks land on the keyframe after the timestamp sought
    ("mpeg4.avi", "mpeg4", {"bf": "2"}, None),
])
def test_a_seek_gives_the_frames_of_a_decode_from_the_first_frame(tmp_path: Path, decoded_frames: list[int],
                                                                  name: str, codec: str, options: dict | None,
                                                                  times: list[int] | None) -> None:
    from lorat_plugin.data.video import SeekIndex

    path = encoded_video(tmp_path / name, textured_clip(), codec=codec, options=options, frame_times_ms=times)
    types = picture_types(path)
    keyframes = [number for number, kind in enumerate(types) if kind == "I"]
    assert "B" in types and len(keyframes) >= 4, types  # what makes seeking hard is there
    source = open_frames(path)
    index = SeekIndex()
    full = list(source.frames(index))
    assert len(full) == 45 and index.seekable
    assert [n for n, mark in enumerate(index.marks) if mark.keyframe] == keyframes
    for start in sorted({0, keyframes[2], keyframes[2] + 1, keyframes[-1] - 1, 44}):
        decoded_frames.clear()
        tail = list(source.frames_from(start, index))
        assert len(tail) == len(full) - start
        assert all(np.array_equal(a, b) for a, b in zip(tail, full[start:])), (name, start)
        work = len(decoded_frames) - len(tail)  # frames decoded before frame `start`
        assert work <= (start if start < keyframes[1] else 2 * GOP), (name, start, work)  # not `start` of them


def test_a_store_tracks_from_a_late_frame_without_decoding_the_frames_before(tmp_path: Path,
                                                                          decoded_frames: list[int]) -> None:
    """What the app does on Track and on a correction: FrameStore.iterate_from(start) on a video its background
    pass has decoded gives the tail of a full decode, decoding at most one group of pictures before ``start``."""
    from lorat_plugin.app.frames import FrameStore

    frames = textured_clip(60)
    path = encoded_video(tmp_path / "clip.mp4", frames)
    full = list(open_frames(path))
    store = FrameStore("clip.mp4", open_frames(path))
    store.decode_in_background()
    assert store.jpeg(len(frames), timeout=60) is None and store.complete and len(store) == 60
    for start in (0, 10, 11, 37, 59):
        decoded_frames.clear()
        first = next(store.iterate_from(start))
        assert np.array_equal(first, full[start])
        assert len(decoded_frames) <= min(start, GOP) + 1, (start, decoded_frames)  # a decode from 0: start + 1
        tail = list(store.iterate_from(start))
        assert len(tail) == 60 - start and all(np.array_equal(a, b) for a, b in zip(tail, full[start:]))


def test_frames_the_index_has_not_reached_or_that_differ_are_decoded_from_the_first_frame(
        tmp_path: Path, decoded_frames: list[int]) -> None:
    import itertools

    from lorat_plugin.data.video import SeekIndex

    path = encoded_video(tmp_path / "clip.mp4", textured_clip())
    source = open_frames(path)
    full = list(source)
    index = SeekIndex()
    assert len(list(itertools.islice(source.frames(index), 25))) == 25  # a background pass still at frame 25

    def tail_from(start: int) -> int:
        """Check the frames from ``start`` on; the count of frames decoded before it."""
        decoded_frames.clear()
        tail = list(source.frames_from(start, index))
        assert len(tail) == len(full) - start and all(np.array_equal(a, b) for a, b in zip(tail, full[start:]))
        return len(decoded_frames) - len(tail)

    assert tail_from(22) == 2  # recorded: from the keyframe at 20
    assert tail_from(30) == 30  # not recorded yet: from the first frame
    index.marks[21] = index.marks[21]._replace(checksum=index.marks[21].checksum ^ 1)  # frame 21 "differs"
    # frame 21 of the seek to frame 20 is refused, so is that of the second try (the keyframe before, 10): the
    # frames come from a decode from the first frame
    assert tail_from(22) == 2 + 12 + 22


def test_a_video_without_timestamps_is_decoded_from_the_first_frame(tmp_path: Path,
                                                                     decoded_frames: list[int]) -> None:
    """A raw H.264 stream has no timestamps to seek to: every start decodes from the first frame, the same frames."""
    from lorat_plugin.data.video import SeekIndex

    path = encoded_video(tmp_path / "clip.h264", textured_clip())
    source = open_frames(path)
    index = SeekIndex()
    full = list(source.frames(index))
    assert not index.seekable
    decoded_frames.clear()
    tail = list(source.frames_from(33, index))
    assert len(decoded_frames) == len(full) and all(np.array_equal(a, b) for a, b in zip(tail, full[33:]))


def test_decoded_frames_have_packed_rows_whatever_the_decoders_padding(tmp_path: Path) -> None:
    # PyAV 18.1.1 returns a view of the decoder's padded rows (a 96-pixel row lies 384 bytes from the next), where
    # earlier releases copied; the seek index's checksums and OpenCV need packed rows
    from lorat_plugin.data.video import SeekIndex, rgb_pixels

    padded = np.zeros((64, 128, 3), np.uint8)[:, :96]
    fake = type("Frame", (), {"to_ndarray": lambda self, format: padded})()
    assert not padded.flags["C_CONTIGUOUS"]
    assert rgb_pixels(fake).flags["C_CONTIGUOUS"] and np.array_equal(rgb_pixels(fake), padded)
    path = encoded_video(tmp_path / "clip.mp4", textured_clip(12))
    index = SeekIndex()
    frames = list(open_frames(path).frames(index))
    assert len(frames) == 12 and index.seekable
    assert all(frame.flags["C_CONTIGUOUS"] and frame.shape == (64, 96, 3) for frame in frames)
