"""The LoRA layer as a table of cases (peft's style): every behaviour is one test function run over ``TEST_CASES``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorat_plugin.model.lora import (LoRALinear, NonFiniteMergeError, attach_lora, lora_layers, merge_lora,
                                     strip_lora)

# Tolerances of one layer's output in each storage dtype (merging rounds the weight to it once).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 3e-3}
# (test id, adapters along the output dimension, storage dtype)
TEST_CASES = [(f"chunks{chunks}-{str(dtype).removeprefix('torch.')}", chunks, dtype)
              for chunks in (1, 3) for dtype in TOLERANCE]
CASE_IDS = [case[0] for case in TEST_CASES]


def _layer(chunks: int, dtype: torch.dtype, seed: int = 0) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(16, 12), rank=4, alpha=8, chunks=chunks)
    with torch.no_grad():  # adapters large enough that merging them visibly changes the weight
        layer.lora_A.normal_(0, 0.3)
        layer.lora_B.normal_(0, 0.3)
    return layer.to(dtype)


def _case(chunks: int, dtype: torch.dtype) -> tuple[LoRALinear, torch.Tensor, torch.Tensor]:
    """The layer, an input and the unmerged output, which visibly differs from the frozen layer's."""
    layer = _layer(chunks, dtype)
    x = torch.randn(3, 5, 16).to(dtype)
    with torch.no_grad():
        expected = layer(x)
        assert not torch.allclose(expected, layer.base(x), atol=10 * TOLERANCE[dtype])
    return layer, x, expected


@pytest.mark.parametrize("name, chunks, dtype", TEST_CASES, ids=CASE_IDS)
@torch.no_grad()
def test_merge_keeps_the_output(name: str, chunks: int, dtype: torch.dtype) -> None:
    layer, x, expected = _case(chunks, dtype)
    tol = TOLERANCE[dtype]
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), expected, atol=tol, rtol=tol)
    layer.merge()  # a second merge changes nothing
    torch.testing.assert_close(layer(x), expected, atol=tol, rtol=tol)
    assert layer.lora_A.dtype == dtype and layer.base.weight.dtype == dtype


@pytest.mark.parametrize("name, chunks, dtype", TEST_CASES, ids=CASE_IDS)
@torch.no_grad()
def test_unmerge_restores_the_weight(name: str, chunks: int, dtype: torch.dtype) -> None:
    layer, x, expected = _case(chunks, dtype)
    tol = TOLERANCE[dtype]
    weight = layer.base.weight.clone()
    layer.merge()
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, weight, atol=tol, rtol=tol)
    torch.testing.assert_close(layer(x), expected, atol=2 * tol, rtol=2 * tol)
    layer.unmerge()  # unmerging an unmerged layer changes nothing
    torch.testing.assert_close(layer.base.weight, weight, atol=tol, rtol=tol)


@pytest.mark.parametrize("name, chunks, dtype", TEST_CASES, ids=CASE_IDS)
@torch.no_grad()
def test_strip_leaves_the_plain_linear(name: str, chunks: int, dtype: torch.dtype) -> None:
    layer, x, expected = _case(chunks, dtype)
    tol = TOLERANCE[dtype]
    holder = nn.Sequential(nn.Identity(), nn.Sequential(layer))
    strip_lora(holder)
    assert type(holder[1][0]) is nn.Linear and not list(lora_layers(holder))
    torch.testing.assert_close(holder(x), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("name, chunks, dtype", TEST_CASES, ids=CASE_IDS)
@torch.no_grad()
def test_saved_adapters_load_into_a_fresh_layer(name: str, chunks: int, dtype: torch.dtype, tmp_path: Path) -> None:
    layer, x, expected = _case(chunks, dtype)
    tol = TOLERANCE[dtype]
    save_file({k: v for k, v in layer.state_dict().items() if "lora_" in k}, str(tmp_path / "a.safetensors"))
    fresh = _layer(chunks, dtype, seed=1)
    fresh.base.load_state_dict(layer.base.state_dict())
    assert not torch.allclose(fresh(x), expected, atol=10 * tol)
    fresh.load_state_dict(load_file(str(tmp_path / "a.safetensors")), strict=False)
    torch.testing.assert_close(fresh(x), expected, atol=0, rtol=0)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("name, chunks, dtype", TEST_CASES, ids=CASE_IDS)
@torch.no_grad()
def test_non_finite_merge_is_refused_and_changes_nothing(name: str, chunks: int, dtype: torch.dtype,
                                                         bad_value: float) -> None:
    good, x, _ = _case(chunks, dtype)
    broken = _layer(chunks, dtype, seed=1)
    broken.lora_B[-1, 0, 0] = bad_value  # one broken adapter entry spoils a whole row of the merged weight
    holder = nn.ModuleDict({"good": good, "blocks": nn.Sequential(nn.Identity(), broken)})
    weights = {key: value.clone() for key, value in holder.state_dict().items()}
    with pytest.raises(NonFiniteMergeError, match=r"^LoRA layer blocks\.1: merging the LoRA adapters gives 16 "
                                                  r"non-finite \(NaN/inf\) of 192 weights") as error:
        merge_lora(holder)
    assert "\n" not in str(error.value)
    # Nothing was written, not even the good layer that comes first: merging is all or none.
    assert not good.merged and not broken.merged
    for key, value in holder.state_dict().items():
        torch.testing.assert_close(value, weights[key], atol=0, rtol=0, equal_nan=True)
    with pytest.raises(NonFiniteMergeError, match="LoRA layer blocks.1"):
        strip_lora(holder)
    assert list(lora_layers(holder))  # the adapters are still in place
    with pytest.raises(NonFiniteMergeError, match="left unmerged"):
        broken.merge()
    assert not broken.merged


@torch.no_grad()
def test_merge_beyond_the_storage_range_is_refused() -> None:
    # Finite adapters whose sum overflows fp16 (max 65504) but not bf16 or fp32: the check is on the stored result.
    layer = _layer(1, torch.float32)
    layer.lora_A.fill_(100.0)
    layer.lora_B.fill_(100.0)  # delta = alpha / rank * rank * 100 * 100 = 80,000 per weight
    for dtype in (torch.float32, torch.bfloat16):
        merge_lora(layer.to(dtype))
        assert layer.merged
        layer.unmerge()
    with pytest.raises(NonFiniteMergeError, match=r"192 non-finite \(NaN/inf\) of 192 weights in torch.float16"):
        merge_lora(layer.to(torch.float16))


@pytest.mark.parametrize("chunks", [1, 3])
def test_delta_weight_is_the_adapter_product(chunks: int) -> None:
    layer = _layer(chunks, torch.float32)
    x = torch.randn(7, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x) - layer.base(x), x @ layer.delta_weight().T, atol=1e-5, rtol=1e-5)


def test_attach_wraps_every_linear_and_chunks_only_qkv() -> None:
    block = nn.ModuleDict({"attn": nn.ModuleDict({"qkv": nn.Linear(8, 24), "proj": nn.Linear(8, 8)}),
                           "mlp": nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8))})
    attach_lora(block, rank=2, alpha=2)
    layers = dict(lora_layers(block))
    assert sorted(layers) == ["attn.proj", "attn.qkv", "mlp.0", "mlp.2"]
    assert layers["attn.qkv"].chunks == 3 and all(layer.chunks == 1 for n, layer in layers.items() if n != "attn.qkv")
    with pytest.raises(ValueError, match="not divisible into 3 chunks"):
        LoRALinear(nn.Linear(8, 10), rank=2, alpha=2, chunks=3)
