"""The TraX tracker program: region conversion, the batched session, settings, and the protocol over real pipes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

trax = pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")

from lorat_plugin.engine import TrackingEngine  # noqa: E402
from lorat_plugin.model.sources import load_model  # noqa: E402
from lorat_plugin.trackers.segmentify import BoxMasker  # noqa: E402
from lorat_plugin.trackers.trax_server import (  # noqa: E402
    ServerSettings, SessionError, TraxSession, read_frame, region_to_box)


def frame(seed: int = 0, size: tuple[int, int] = (96, 72)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((size[1], size[0], 3)) * 200).astype(np.uint8)
    image[20:38, 30:54] = (230, 40, 40)
    return image


@pytest.fixture
def engine(tiny_checkpoint: Path) -> TrackingEngine:
    return TrackingEngine(load_model(checkpoint=tiny_checkpoint), device="cpu")


# ---- regions ---------------------------------------------------------------------------------------------------------
def test_rectangle_is_already_our_box() -> None:
    assert region_to_box(trax.Rectangle.create(10.5, 20, 24, 16)).tolist() == [10.5, 20, 24, 16]


def test_polygon_gives_its_extreme_points() -> None:
    polygon = trax.Polygon.create([(10, 22), (30, 20), (34, 36), (12, 40)])
    assert region_to_box(polygon).tolist() == [10, 20, 24, 20]


def test_mask_gives_the_bounding_box_of_its_pixels_with_offset() -> None:
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:9, 7:19] = 1  # rows 5..8, columns 7..18: 12 x 4 pixels
    box = region_to_box(trax.Mask.create(mask, x=100, y=50))
    assert box.tolist() == [107, 55, 12, 4]


@pytest.mark.parametrize("region, message", [
    (lambda: trax.Mask.create(np.zeros((4, 4), dtype=np.uint8)), "empty mask"),
    (lambda: trax.Rectangle.create(10, 10, 0, 5), "no area"),
    (lambda: trax.Special.create(0), "cannot start a track"),
])
def test_regions_that_cannot_start_a_track_are_session_errors(region, message: str) -> None:
    with pytest.raises(SessionError, match=message):
        region_to_box(region())


def test_unreadable_frame_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "00000001.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(SessionError, match="00000001.jpg"):
        read_frame({"color": trax.FileImage.create(str(broken))})


# ---- the session -----------------------------------------------------------------------------------------------------
def test_objects_are_batch_elements_and_late_objects_join(engine: TrackingEngine) -> None:
    session = TraxSession(engine)
    reply = session.initialize(frame(0), [trax.Rectangle.create(30, 20, 24, 18)])
    assert len(reply) == 1 and reply[0][1]["confidence"] == "1.000000"
    assert region_to_box(reply[0][0]).tolist() == [30, 20, 24, 18]
    reply = session.frame(frame(1), [trax.Rectangle.create(5, 5, 10, 12)])  # a second object appears
    assert len(reply) == 2 and len(session.states) == 2
    assert region_to_box(reply[1][0]).tolist() == [5, 5, 10, 12]
    reply = session.frame(frame(2))
    assert len(reply) == 2
    for region, properties in reply:
        assert region.type == trax.Region.RECTANGLE and 0.0 <= float(properties["confidence"]) <= 1.0

    # A batch of the same objects gives what each gives alone (each object is its own batch element), exactly: the
    # CPU engine calls the network once per object.
    alone = TraxSession(TrackingEngine(engine.network))
    alone.initialize(frame(0), [trax.Rectangle.create(30, 20, 24, 18)])
    alone.frame(frame(1))
    (single, _), = alone.frame(frame(2))
    np.testing.assert_array_equal(region_to_box(single), region_to_box(reply[0][0]))

    # initialize again (a multistart anchor): the batch is replaced, not extended
    session.initialize(frame(3), [trax.Rectangle.create(30, 20, 24, 18)])
    assert len(session.states) == 1


def test_mask_output_is_the_rasterised_box(engine: TrackingEngine) -> None:
    session = TraxSession(engine, BoxMasker())
    mask = np.zeros((72, 96), dtype=np.uint8)
    mask[20:38, 30:54] = 1
    (region, properties), = session.initialize(frame(0), [trax.Mask.create(mask)])
    assert region.type == trax.Region.MASK
    assert region.offset() == (30, 20) and region.array().shape == (18, 24) and region.array().all()
    (region, properties), = session.frame(frame(1))
    assert region.type == trax.Region.MASK and float(properties["confidence"]) >= 0


def test_frame_before_initialize_is_an_error(engine: TrackingEngine) -> None:
    with pytest.raises(SessionError, match="before initialize"):
        TraxSession(engine).frame(frame(0))


def test_objects_may_all_start_later(engine: TrackingEngine) -> None:
    session = TraxSession(engine)
    assert session.initialize(frame(0), []) == [] and session.frame(frame(1)) == []
    assert len(session.frame(frame(2), [trax.Rectangle.create(30, 20, 24, 18)])) == 1
    assert len(session.frame(frame(3))) == 1


def test_box_outside_the_frame_is_a_session_error(engine: TrackingEngine) -> None:
    with pytest.raises(SessionError, match="outside"):
        TraxSession(engine).initialize(frame(0), [trax.Rectangle.create(500, 500, 10, 10)])


# ---- settings --------------------------------------------------------------------------------------------------------
def test_settings_from_environment(tiny_checkpoint: Path, tmp_path: Path) -> None:
    settings = ServerSettings.from_env({"LORAT_CHECKPOINT": str(tiny_checkpoint), "LORAT_VARIANT": "",
                                        "LORAT_VOT_OUTPUT": "mask", "LORAT_DEVICE": "cpu"})
    assert settings.model.checkpoint == tiny_checkpoint and settings.model.variant is None
    assert settings.output == "mask" and settings.model.device == "cpu"
    assert ServerSettings.from_env({}).model.is_demo  # nothing set: the demo model
    with pytest.raises(FileNotFoundError, match="no LoRAT checkpoint in"):  # a folder alone: no B-224 fallback
        ServerSettings.from_env({"LORAT_WEIGHTS_DIR": str(tmp_path)})


@pytest.mark.parametrize("env, message", [
    ({"LORAT_WEIGHTS_DIR": "${LORAT_WEIGHTS_DIR}"}, "export LORAT_WEIGHTS_DIR"),
    ({"LORAT_CHECKPOINT": "weights/base.bin"}, "relative path"),
    ({"LORAT_VOT_OUTPUT": "polygon"}, "rectangle or mask"),
])
def test_settings_errors_say_what_to_do(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerSettings.from_env(env)


# ---- the protocol, with the program as a subprocess -----------------------------------------------------------------
def start_server(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, "trax.Client", Path]:
    """The program as the toolkit starts it: TraX on stdin/stdout, in a temporary working directory."""
    from trax.client import Client

    log = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LORAT_")}
    full_env.update(env, TRAX="1")
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "lorat_plugin.trackers.trax_server"], cwd=workdir,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=full_env)
    # (vot-trax's Client needs a log callable; stray stdout lines of the program would land in it)
    client = Client(stream=(process.stdin.fileno(), process.stdout.fileno()), log=lambda fragment: None)
    return process, client, log


def save_frames(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = tmp_path / f"{i + 1:08d}.jpg"
        Image.fromarray(frame(i)).save(path)
        paths.append(str(path))
    return paths


def images(path: str) -> dict:
    return {"color": trax.FileImage.create(path)}


def finish(process: subprocess.Popen, client: "trax.Client") -> int:
    """End the session as the toolkit does (quit, then close the pipe). vot-trax's client crashes the calling
    process if it is garbage-collected without a quit, so every test quits."""
    try:
        client.quit()
    except trax.TraxException:
        pass
    process.stdin.close()
    return process.wait(timeout=60)


def test_protocol_session_multiobject_and_quit(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = save_frames(tmp_path, 4)
    process, client, log = start_server(tmp_path, {"LORAT_CHECKPOINT": str(tiny_checkpoint)})
    try:
        assert client.get("multiobject") is True and client.tracker_name == "LoRAT"
        state, _ = client.initialize(images(paths[0]), [(trax.Rectangle.create(30, 20, 24, 18), {})], {})
        assert len(state) == 1 and state[0][1]["confidence"] == "1.000000"
        state, _ = client.frame(images(paths[1]), {}, [])
        assert len(state) == 1 and state[0][0].type == trax.Region.RECTANGLE
        # re-initialise with two objects of other region types
        mask = np.zeros((72, 96), dtype=np.uint8)
        mask[10:20, 60:80] = 1
        state, _ = client.initialize(images(paths[2]), [
            (trax.Polygon.create([(30, 20), (54, 20), (54, 38), (30, 38)]), {}), (trax.Mask.create(mask), {})], {})
        assert [region_to_box(r).tolist() for r, _ in state] == [[30, 20, 24, 18], [60, 10, 20, 10]]
        state, _ = client.frame(images(paths[3]), {}, [])
        assert len(state) == 2
    finally:
        code = finish(process, client)
    stderr = log.read_text()
    assert code == 0, stderr
    assert "@@TRAX" not in stderr and "width 32, depth 2" in stderr and "quit after 4 frames" in stderr
    assert "runs on: " in stderr and " threads, 1 process, lorat-plugin " in stderr  # how it ran, in VOT's log


def test_end_of_input_ends_the_program(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The toolkit killed or gone: EOF on stdin after the handshake ends the program with status 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAT_")}
    env.update(LORAT_CHECKPOINT=str(tiny_checkpoint), TRAX="1")
    process = subprocess.Popen([sys.executable, "-m", "lorat_plugin.trackers.trax_server"], cwd=tmp_path,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    hello = process.stdout.readline()
    assert hello.startswith(b"@@TRAX:hello") and b"trax.region=rectangle;polygon;mask;" in hello
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert b"session ended" in process.stderr.read()


def test_protocol_errors_reach_the_client(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = save_frames(tmp_path, 1)
    process, client, log = start_server(tmp_path, {"LORAT_CHECKPOINT": str(tiny_checkpoint),
                                                   "LORAT_VOT_OUTPUT": "mask"})
    try:
        state, _ = client.initialize(images(paths[0]), [(trax.Rectangle.create(30, 20, 24, 18), {})], {})
        assert state[0][0].type == trax.Region.MASK
        with pytest.raises(trax.TraxException, match="frame not found: .*missing.jpg"):
            client.frame(images(str(tmp_path / "missing.jpg")), {}, [])
    finally:
        code = finish(process, client)
    assert code == 1
