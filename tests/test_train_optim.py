"""Optimiser parameter groups and the learning-rate schedule of the recipe."""
from __future__ import annotations

import pytest
import torch

from lorat_plugin.model import build_model
from lorat_plugin.train.config import OptimSection
from lorat_plugin.train.optim import build_optimizer, build_schedule, parameter_groups


def _names(model: torch.nn.Module, groups: list[dict], keep) -> set[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for g in groups if keep(g) for p in g["params"]}


def test_weight_decay_exceptions(tiny_config) -> None:
    model = build_model(tiny_config)
    groups = parameter_groups(model, 0.1)
    decay = _names(model, groups, lambda g: g["weight_decay"] > 0)
    no_decay = _names(model, groups, lambda g: g["weight_decay"] == 0)
    assert "token_type_embed" in no_decay and "head.cls_mlp.layers.2.weight" in no_decay  # 1 x D squeezes to 1-D
    assert all(n.endswith(".bias") for n in no_decay if n.startswith("head.") and n != "head.cls_mlp.layers.2.weight")
    assert "head.reg_mlp.layers.2.weight" in decay and all("lora_" in n or n.startswith("head.") for n in decay)
    assert any("lora_A" in n for n in decay) and any("lora_B" in n for n in decay)
    # Full fine-tuning: norms and embeddings are not decayed; layer decay scales the blocks' rates.
    full = build_model(tiny_config.replace(tuning="full"))
    names = {id(p): n for n, p in full.named_parameters()}
    scales = {names[id(p)]: g["lr_scale"] for g in parameter_groups(full, 0.1, 0.5) for p in g["params"]}
    assert scales["patch_embed.proj.weight"] == 0.5 ** 3 and scales["blocks.0.attn.qkv.weight"] == 0.5 ** 2
    assert scales["blocks.1.attn.qkv.weight"] == 0.5 and scales["head.cls_mlp.layers.0.weight"] == 1.0
    full_no_decay = _names(full, parameter_groups(full, 0.1), lambda g: g["weight_decay"] == 0)
    assert {"blocks.0.norm1.weight", "norm.weight", "pos_embed", "token_type_embed"} <= full_no_decay
    optimizer = build_optimizer(model, OptimSection())
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 1e-4


def test_schedule_warms_up_per_step_then_follows_the_cosine_after_the_warm_up() -> None:
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-4)
    steps, epochs, optim = 10, 5, OptimSection()

    def lr(schedule, step: int) -> float:
        schedule.step_update(step)
        return optimizer.param_groups[0]["lr"]

    schedule = build_schedule(optimizer, optim, steps, epochs)
    assert lr(schedule, 0) == 1e-7 and lr(schedule, 10) == pytest.approx((1e-7 + 1e-4) / 2)
    assert lr(schedule, 2 * steps) == pytest.approx(1e-4)  # the cosine starts after the 2 warm-up epochs ...
    half = 2 * steps + epochs * steps // 2  # ... and its period is the whole run after them
    assert lr(schedule, half) == pytest.approx((1e-4 + 1e-6) / 2)
    assert lr(schedule, 10 ** 6) == 1e-6
    # A pure function of the step, as resuming needs: the same rate whatever came before.
    assert lr(build_schedule(optimizer, optim, steps, epochs), 37) == lr(schedule, 37)
    # The recipe's 170 x 1024 steps end short of the cosine's end, at about 1.03e-6 (as the reference).
    assert lr(build_schedule(optimizer, optim, 1024, 170), 170 * 1024 - 1) == pytest.approx(1.034e-6, rel=1e-3)


def test_layer_decay_scales_reach_the_optimizer(tiny_config) -> None:
    model = build_model(tiny_config.replace(tuning="full"))
    optimizer = build_optimizer(model, OptimSection(layer_decay=0.5))
    schedule = build_schedule(optimizer, OptimSection(layer_decay=0.5), 10, 5)
    schedule.step_update(20)
    rates = sorted({round(g["lr"] / 1e-4, 6) for g in optimizer.param_groups})
    assert rates == [0.125, 0.25, 0.5, 1.0]
