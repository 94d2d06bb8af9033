"""Batch invariance on the CPU: a sequence's boxes are bit-identical whatever else shares its forward passes.

At B-224 widths (768 wide, 12 heads, 320 tokens per frame), where matrix-product kernels pick their blocking by
the number of rows and int8 picks one activation scale per call; the suite's tiny model (32 wide) agrees at every
batch size whatever the engine does, so it would prove nothing here. One block keeps it fast: the kernels' choice
depends on the widths and rows, not on the depth.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.engine.int8 import int8_available
from lorat_plugin.engine.precision import cpu_has_native_bf16
from lorat_plugin.model import ModelConfig, build_model

B224_WIDTHS = ModelConfig(embed_dim=768, depth=1, num_heads=12)
FRAME_SIZE = (192, 144)


def _precisions() -> list:
    bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 is not this CPU's native precision")
    int8 = pytest.mark.skipif(not int8_available(), reason="this torch build has no oneDNN int8 kernels")
    return ["fp32", pytest.param("bf16", marks=bf16), pytest.param("int8", marks=int8)]


@pytest.fixture(scope="module")
def b224_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(B224_WIDTHS)
    with torch.no_grad():  # random, not the init's near-zero LayerScale: every block must move the tokens
        for block in model.blocks:
            block.ls1.gamma.fill_(0.5)
            block.ls2.gamma.fill_(0.5)
    return model.eval()


def _videos(count: int, frames: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    return [moving_box_video(frames, FRAME_SIZE, seed=seed, step=(3.0, 2.0), textured=True) for seed in range(count)]


def _track_scheduled(engine: TrackingEngine, videos: list, batch_size: int, order: list[int]) -> dict[int, np.ndarray]:
    """Track ``videos`` as the evaluation runner does: ``batch_size`` in flight, a finished sequence's slot given to
    the next in ``order`` at once (so sequences start at different steps and batches change composition)."""
    boxes = {i: [truth[0]] for i, (_, truth) in enumerate(videos)}
    waiting, active = list(order), []
    while waiting or active:
        starting = [waiting.pop(0) for _ in range(min(batch_size - len(active), len(waiting)))]
        if starting:
            states = engine.initialize([videos[i][0][0] for i in starting], np.stack([videos[i][1][0] for i in starting]))
            active += [(i, state, 1) for i, state in zip(starting, states)]
        out, _ = engine.track([state for _, state, _ in active], [videos[i][0][k] for i, _, k in active])
        for (i, _, _), box in zip(active, out):
            boxes[i].append(box)
        active = [(i, state, k + 1) for i, state, k in active if k + 1 < len(videos[i][0])]
    return {i: np.array(b) for i, b in boxes.items()}


@pytest.mark.parametrize("precision", _precisions())
def test_a_sequences_boxes_do_not_depend_on_what_shares_its_batch(b224_model, precision: str) -> None:
    torch.set_num_threads(torch.get_num_threads())  # one fixed count for every run below
    videos = _videos(4, 5)
    engine = TrackingEngine(b224_model, device="cpu", dtype=precision)
    alone = {i: _track_scheduled(engine, [video], 1, [0])[0] for i, video in enumerate(videos)}
    rng = random.Random(precision)
    for batch_size in (3, 8):  # a random composition per batch size: staggered starts, shrinking batches at the end
        order = list(range(len(videos)))
        rng.shuffle(order)
        together = _track_scheduled(engine, videos, batch_size, order)
        for i in range(len(videos)):
            assert np.array_equal(together[i], alone[i]), (
                f"{precision}: sequence {i} in batches of {batch_size} (order {order}) differs from alone by "
                f"{np.abs(together[i] - alone[i]).max():.3g} px")


@pytest.mark.parametrize("precision", _precisions())
def test_the_network_row_of_a_sequence_is_the_same_alone_and_in_a_batch(b224_model, precision: str) -> None:
    engine = TrackingEngine(b224_model, device="cpu", dtype=precision)
    z, x, mask = b224_model.get_sample_data(8, "cpu", seed=3)
    x[3:] *= 4  # other sequences with another range: int8's activation scale would follow them
    batched = engine.network(z, x, mask)
    for row in (0, 5):
        alone = engine.network(z[row:row + 1], x[row:row + 1], mask[row:row + 1])
        assert torch.equal(batched.score_map[row], alone.score_map[0]) and torch.equal(batched.boxes[row], alone.boxes[0])


def test_the_batched_path_stays_selectable_and_is_named(b224_model) -> None:
    """``per_sequence=False`` (``lorat benchmark --compare batched``) is one call for the whole batch."""
    batched = TrackingEngine(b224_model, device="cpu", dtype="fp32", per_sequence=False).network
    default = TrackingEngine(b224_model, device="cpu", dtype="fp32").network
    assert "one call per sequence" in default.description and "one call per sequence" not in batched.description
    calls = []
    hook = batched.module.register_forward_pre_hook(lambda module, args: calls.append(args[1].shape[0]))
    try:
        batched(*b224_model.get_sample_data(3, "cpu"))
    finally:
        hook.remove()
    assert calls == [3]
