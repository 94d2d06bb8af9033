"""The tracking engine: reference parity, pipeline geometry (independent of the network), batching, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine, hann_window, select_boxes
from lorat_plugin.engine.tracking import clamp_min_size, track_frames
from lorat_plugin.geometry import (IMAGENET_MEAN, IMAGENET_STD, apply_transform, crop_image, crop_transform,
                                   invert_transform, xywh_to_xyxy)
from lorat_plugin.model import ModelConfig, build_model

from conftest import TRACKING_FIXTURES



# ---- a stub network that "sees" the target: geometry without a trained model -------------------------------------

class TargetFinder:
    """A network stand-in: finds the red target in each search crop (after the engine's normalisation), puts a
    high score on the cell under the target's centre and the target's extent as every cell's box."""

    def __init__(self, config: ModelConfig, output: str = "target") -> None:
        self.config, self.output = config, output
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.templates: list[torch.Tensor] = []

    def __call__(self, z, x, z_feat_mask):
        self.templates.append(z)
        batch, size, grid = x.shape[0], self.config.search_size, self.config.search_grid
        rgb = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        red = (rgb[:, 0] > 0.5) & (rgb[:, 1] < 0.5)
        scores = torch.full((batch, grid, grid), -10.0)
        boxes = torch.zeros(batch, grid, grid, 4)
        for i in range(batch):
            ys, xs = torch.nonzero(red[i], as_tuple=True)
            if len(xs) == 0:
                continue
            box = torch.tensor((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), dtype=torch.float32) / size
            cx, cy = int((box[0] + box[2]) / 2 * grid), int((box[1] + box[3]) / 2 * grid)
            scores[i, cy, cx] = 10.0
            boxes[i] = box
        if self.output == "nan":
            scores[:] = float("nan")
        return scores, boxes


def moving_target(n: int = 20, size: tuple[int, int] = (160, 120), seed: int = 0):
    """Frames with a red rectangle moving (and growing) over noise that is never red; its true x, y, w, h boxes."""
    return moving_box_video(n, size, box=(30, 25, 24, 18), step=(3, 2), growth=(0.25, 0.2), seed=seed)


GEOMETRIES = {
    "224": ModelConfig(embed_dim=32, depth=1, num_heads=2),
    "378": ModelConfig(embed_dim=32, depth=1, num_heads=2, template_size=196, search_size=378, search_area_factor=5.0),
}


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_follows_a_moving_target_within_a_pixel(geometry: str) -> None:
    frames, truth = moving_target()
    engine = TrackingEngine(TargetFinder(GEOMETRIES[geometry]))
    states = engine.initialize([frames[0]], truth[:1])
    for frame, expected in zip(frames[1:], truth[1:]):
        boxes, scores = engine.track(states, [frame])
        np.testing.assert_allclose(boxes[0], expected, atol=1.0)
        assert scores[0] == pytest.approx(1 / (1 + np.exp(-10)))


def test_template_is_cropped_with_mean_padding_and_mask() -> None:
    config = GEOMETRIES["224"]
    frame = np.zeros((40, 60, 3), dtype=np.uint8)
    frame[0:20, 0:20] = 200  # the whole frame's mean pads the template crop, which reaches past the image
    stub = TargetFinder(config)
    engine = TrackingEngine(stub)
    state = engine.initialize([frame], [(0, 0, 20, 20)])[0]
    mean = frame.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(state.fill.numpy(), mean, rtol=1e-5)
    corner = state.template[:, 0, 0] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    np.testing.assert_allclose(corner.numpy() * 255, mean, rtol=1e-4)
    # A 20 px box with factor 2 spans a 40 px crop side: the box covers the middle half of the 8 x 8 token grid.
    expected = torch.zeros(8, 8, dtype=torch.long)
    expected[2:6, 2:6] = 1
    assert torch.equal(state.template_mask, expected)


def test_crop_then_map_back_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(20, 300, 2)
        image = torch.rand(3, height, width) * 255
        box = xywh_to_xyxy(np.array((rng.uniform(-10, width), rng.uniform(-10, height),
                                     rng.uniform(1, 80), rng.uniform(1, 80))))
        scale, translation = crop_transform(box, rng.uniform(1.5, 5), 224)
        _, real_scale, real_translation = crop_image(image, scale, translation, 224, torch.zeros(3))
        there = apply_transform(box, real_scale, real_translation)
        back = apply_transform(there, *invert_transform(real_scale, real_translation))
        np.testing.assert_allclose(back, box, atol=1e-6)


def test_crop_puts_image_content_where_the_realised_transform_says() -> None:
    image = torch.zeros(3, 90, 130)
    image[:, 31:52, 47:81] = 255.0  # a white rectangle x 47..81, y 31..52
    box = np.array((47.0, 31.0, 81.0, 52.0))
    for factor, size in ((4.0, 224), (5.0, 378), (2.0, 112), (4.0, 56)):
        crop, scale, translation = crop_image(image, *crop_transform(box, factor, size), size, torch.zeros(3))
        ys, xs = torch.nonzero(crop[0] > 127.5, as_tuple=True)
        seen = np.array((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), dtype=np.float64)
        np.testing.assert_allclose(seen, apply_transform(box, scale, translation), atol=0.75)


def test_hann_blend_prefers_the_centre_over_a_stronger_border_peak() -> None:
    window = hann_window(16, 16)
    assert window[0].abs().max() == 0 and window.max() < 1 and torch.allclose(window, window.flip(0).flip(1))
    logits = torch.full((1, 16, 16), -8.0)
    logits[0, 0, 15] = 3.0   # sigmoid 0.953 in a corner, where the window is 0
    logits[0, 7, 8] = 0.5    # sigmoid 0.622 next to the centre
    boxes = torch.rand(1, 16, 16, 4)
    out = select_boxes(logits, boxes, window, 224)
    np.testing.assert_allclose(out[0, :4].numpy(), boxes[0, 7, 8].numpy() * 224, rtol=1e-6)
    assert out[0, 4].item() == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item())  # raw score, not blended
    # Without the window the corner wins; a weak window (0.1) does not overcome it either.
    assert torch.allclose(select_boxes(logits, boxes, window, 224, window_penalty=0)[0, :4], boxes[0, 0, 15] * 224)
    assert torch.allclose(select_boxes(logits, boxes, window, 224, window_penalty=0.1)[0, :4], boxes[0, 0, 15] * 224)


def test_small_boxes_are_searched_as_at_least_10_px() -> None:
    np.testing.assert_allclose(clamp_min_size(np.array((50.0, 60.0, 52.0, 90.0)), 10), (46, 60, 56, 90))
    np.testing.assert_allclose(clamp_min_size(np.array((5.0, 5.0, 25.0, 45.0)), 10), (5, 5, 25, 45))


# ---- the reference implementation's own boxes -------------------------------------------------------------------

@pytest.mark.parametrize("fixture", TRACKING_FIXTURES)
def test_reproduces_the_reference_tracker_frame_by_frame(fixture: str, reference_tracking, reference_case) -> None:
    """The 224 geometry (search factor 4) and the 378 one (factor 5), frames of 320x240 and 400x300."""
    model, frames, init = reference_tracking(name=fixture)
    reference = reference_case(fixture).expected["boxes"].numpy()  # x, y, w, h; row 0 is the init box
    assert len(frames) == len(reference) >= 12
    engine = TrackingEngine(model, device="cpu", dtype="fp32")
    # Batched with a second sequence (the same frames backwards) that must not disturb the first.
    states = engine.initialize([frames[0], frames[-1]], [init, reference[-1]])
    ours = [states[0].box]
    for i in range(1, len(frames)):
        boxes, scores = engine.track(states, [frames[i], frames[-1 - i]])
        ours.append(boxes[0])
        assert 0 <= scores[0] <= 1
    error = np.abs(np.array(ours) - reference).max(axis=1)
    assert error.max() < 1.0, f"frames off by >= 1 px: {np.nonzero(error >= 1)[0].tolist()}"
    assert error.max() < 0.01  # in practice float noise only


# ---- batching ---------------------------------------------------------------------------------------------------

def test_batched_equals_one_sequence_at_a_time(tiny_checkpoint: Path) -> None:
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    sequences = [moving_target(n, size, seed) for n, size, seed in ((9, (160, 120), 0), (6, (90, 70), 1),
                                                                   (12, (64, 64), 2))]
    engine = TrackingEngine(model, device="cpu")
    alone = []
    for frames, truth in sequences:
        alone.append(np.array([box for _, box, _ in track_frames(engine, frames, truth[0])]))

    states = engine.initialize([frames[0] for frames, _ in sequences], [truth[0] for _, truth in sequences])
    together = [[state.box.copy()] for state in states]
    for t in range(1, max(len(frames) for frames, _ in sequences)):
        live = [i for i, (frames, _) in enumerate(sequences) if t < len(frames)]  # the batch shrinks as they end
        boxes, _ = engine.track([states[i] for i in live], [sequences[i][0][t] for i in live])
        for i, box in zip(live, boxes):
            together[i].append(box)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(np.array(b), a, atol=1e-4, rtol=0)  # float noise of batched matmuls at most


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_autocast_runs(tiny_checkpoint: Path, dtype: str) -> None:
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    frames, truth = moving_target(4)
    engine = TrackingEngine(model, device="cpu", dtype=dtype)
    assert engine.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    boxes = [box for _, box, _ in track_frames(engine, frames, truth[0])]
    assert np.isfinite(np.array(boxes)).all()


def test_unmerged_model_is_tracked_with_a_merged_copy(tiny_checkpoint: Path) -> None:
    unmerged = build_model(checkpoint=tiny_checkpoint)
    merged = build_model(checkpoint=tiny_checkpoint, merge=True)
    frames, truth = moving_target(5)
    a = [box for _, box, _ in track_frames(TrackingEngine(unmerged), frames, truth[0])]
    b = [box for _, box, _ in track_frames(TrackingEngine(merged), frames, truth[0])]
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert unmerged.has_lora  # the caller's model is left as it was


# ---- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("box, message", [((10, 10, 0, 20), "zero or negative size"),
                                          ((10, 10, 20, -1), "zero or negative size"),
                                          ((200, 10, 20, 20), "outside"), ((-40, -40, 30, 30), "outside"),
                                          ((10, np.nan, 20, 20), "non-finite")])
def test_unusable_init_boxes_are_refused(box, message: str, tiny_config) -> None:
    engine = TrackingEngine(TargetFinder(tiny_config))
    with pytest.raises(ValueError, match=message):
        engine.initialize([np.zeros((100, 120, 3), np.uint8)], [box])


def test_partly_outside_init_box_is_clipped(tiny_config) -> None:
    frames, _ = moving_target(3)
    state = TrackingEngine(TargetFinder(tiny_config)).initialize([frames[0]], [(-10, 100, 40, 40)])[0]
    np.testing.assert_allclose(state.box, (0, 100, 30, 20))


def test_gray_rgba_and_tiny_frames(tiny_config) -> None:
    frames, truth = moving_target(4)
    engine = TrackingEngine(TargetFinder(tiny_config))
    state = engine.initialize([frames[0][..., 0]], truth[:1])[0]  # H x W gray
    rgba = np.concatenate((frames[1], np.full(frames[1].shape[:2] + (1,), 255, np.uint8)), axis=2)
    boxes, _ = engine.track([state], [rgba])
    np.testing.assert_allclose(boxes[0], truth[1], atol=1.0)
    tiny = np.zeros((6, 8, 3), np.uint8)  # much smaller than the 56 px search crop
    with pytest.warns(RuntimeWarning, match="8x6"):
        boxes, _ = engine.track([state], [tiny])
    assert np.all(boxes[0][:2] >= 0) and boxes[0][0] + boxes[0][2] <= 8 and boxes[0][1] + boxes[0][3] <= 6
    with pytest.raises(ValueError, match="image"):
        engine.track([state], [np.zeros((6, 8, 5), np.uint8)])
    small = engine.initialize([tiny], [(2, 1, 3, 3)])[0]  # a whole sequence of frames smaller than the crops
    boxes, _ = engine.track([small], [tiny])
    assert np.isfinite(boxes).all() and boxes[0][0] + boxes[0][2] <= 8


def test_frame_size_change_warns_once_and_keeps_pixel_coordinates() -> None:
    frames, truth = moving_target(6)
    engine = TrackingEngine(TargetFinder(GEOMETRIES["224"]))
    state = engine.initialize([frames[0]], truth[:1])[0]
    bigger = [np.pad(f, ((0, 40), (0, 60), (0, 0))) for f in frames[1:]]  # same content, larger canvas
    with pytest.warns(RuntimeWarning, match="previous frame was 160x120") as record:
        for frame, expected in zip(bigger, truth[1:]):
            boxes, _ = engine.track([state], [frame])
            np.testing.assert_allclose(boxes[0], expected, atol=1.0)
    assert len([w for w in record if "previous frame" in str(w.message)]) == 1
    assert state.frame_size == (220, 160)


def test_nan_from_the_network_keeps_the_last_box(tiny_config) -> None:
    frames, truth = moving_target(5)
    stub = TargetFinder(tiny_config)
    engine = TrackingEngine(stub)
    state = engine.initialize([frames[0]], truth[:1])[0]
    engine.track([state], [frames[1]])
    last = state.box.copy()
    stub.output = "nan"
    with pytest.warns(RuntimeWarning, match="non-finite") as record:
        for frame in frames[2:]:
            boxes, scores = engine.track([state], [frame])
            np.testing.assert_array_equal(boxes[0], last)
            assert scores[0] == 0.0
    assert len(record) == 1 and state.nan_frames == 3


def test_batch_and_frames_must_agree(tiny_config) -> None:
    engine = TrackingEngine(TargetFinder(tiny_config))
    frames, truth = moving_target(2)
    states = engine.initialize([frames[0]], truth[:1])
    with pytest.raises(ValueError, match="one frame per state"):
        engine.track(states, frames)
    with pytest.raises(ValueError, match="one x,y,w,h box per frame"):
        engine.initialize(frames, truth[:1])
    boxes, scores = engine.track([], [])
    assert boxes.shape == (0, 4) and scores.shape == (0,)
