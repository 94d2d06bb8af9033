"""Frames of every dtype reach the tracker as the picture they hold, or are refused in one line;
a numbered frame folder with a gap is refused."""
from __future__ import annotations

import struct
import zlib
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
