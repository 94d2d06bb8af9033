"""The LoRA layer as a table of cases (peft's style): chunks x dtype x what is done to the layer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorat_plugin.model.lora import LoRALinear, attach_lora, lora_layers, strip_lora

# Tolerances of one layer's output in each storage dtype (merging rounds the weight to it once).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 3e-3}
OPERATIONS = ("merge", "unmerge", "strip", "save-load")
TEST_CASES = [(f"chunks{chunks}-{str(dtype).removeprefix('torch.')}-{operation}", chunks, dtype, operation)
              for chunks in (1, 3) for dtype in TOLERANCE for operation in OPERATIONS]


def _layer(chunks: int, dtype: torch.dtype, seed: int = 0) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(16, 12), rank=4, alpha=8, chunks=chunks)
    with torch.no_grad():  # adapters large enough that merging them visibly changes the weight
        layer.lora_A.normal_(0, 0.3)
        layer.lora_B.normal_(0, 0.3)
    return layer.to(dtype)


@pytest.mark.parametrize("name, chunks, dtype, operation", TEST_CASES, ids=[c[0] for c in TEST_CASES])
def test_lora_layer(name: str, chunks: int, dtype: torch.dtype, operation: str, tmp_path: Path) -> None:
    layer = _layer(chunks, dtype)
    x = torch.randn(3, 5, 16).to(dtype)
    tol = TOLERANCE[dtype]
    with torch.no_grad():
        expected = layer(x)
        plain = layer.base(x)
        assert not torch.allclose(expected, plain, atol=10 * tol)  # the adapters matter in this case
        weight = layer.base.weight.clone()
        if operation == "merge":
            layer.merge()
            assert layer.merged
            torch.testing.assert_close(layer(x), expected, atol=tol, rtol=tol)
            layer.merge()  # a second merge changes nothing
            torch.testing.assert_close(layer(x), expected, atol=tol, rtol=tol)
        elif operation == "unmerge":
            layer.merge()
            layer.unmerge()
            assert not layer.merged
            torch.testing.assert_close(layer.base.weight, weight, atol=tol, rtol=tol)
            torch.testing.assert_close(layer(x), expected, atol=2 * tol, rtol=2 * tol)
        elif operation == "strip":
            holder = nn.Sequential(nn.Identity(), nn.Sequential(layer))
            strip_lora(holder)
            assert type(holder[1][0]) is nn.Linear and not list(lora_layers(holder))
            torch.testing.assert_close(holder(x), expected, atol=tol, rtol=tol)
        else:  # save-load: the adapters alone into a fresh layer over the same frozen weight
            save_file({k: v for k, v in layer.state_dict().items() if "lora_" in k}, str(tmp_path / "a.safetensors"))
            fresh = _layer(chunks, dtype, seed=1)
            fresh.base.load_state_dict(layer.base.state_dict())
            assert not torch.allclose(fresh(x), expected, atol=10 * tol)
            fresh.load_state_dict(load_file(str(tmp_path / "a.safetensors")), strict=False)
            torch.testing.assert_close(fresh(x), expected, atol=0, rtol=0)
    assert layer.lora_A.dtype == dtype and layer.base.weight.dtype == dtype


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
