"""LoRA for frozen ``nn.Linear`` layers, with explicit fp32 merge and unmerge.

A fused layer (the ViT's ``qkv``) gets one independent adapter per output chunk, exactly as if q, k and v were
separate linears -- which is how LoRAT adapts them. We keep the frozen layer fused and run the adapters as one
batched low-rank product, so training never pays for a full-size weight gradient (``torch.nn.utils.parametrize``
would materialise ``W + BA`` and back-propagate a dense dW every step, losing LoRA's training speed).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class NonFiniteMergeError(ValueError):
    """Merging LoRA adapters would write NaN or inf into a frozen weight; the message names the layer."""


class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(x))`` with ``chunks`` independent adapters along the output dimension."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, chunks: int = 1) -> None:
        super().__init__()
        if base.out_features % chunks:
            raise ValueError(f"out_features {base.out_features} is not divisible into {chunks} chunks")
        self.base = base
        self.rank, self.alpha, self.chunks = rank, float(alpha), chunks
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(chunks * rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(chunks, base.out_features // chunks, rank, **factory))
        self.merged = False
        self.reset_parameters()

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def reset_parameters(self) -> None:
        # The reference's "bert" init: both factors ~ trunc-normal(0.02), so the initial delta is small but non-zero.
        nn.init.trunc_normal_(self.lora_A, std=0.02)
        nn.init.trunc_normal_(self.lora_B, std=0.02)

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``scale * B @ A`` in float32, shaped like ``base.weight``."""
        a = self.lora_A.float().view(self.chunks, self.rank, -1)
        return torch.bmm(self.lora_B.float(), a).flatten(0, 1) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        h = F.linear(x, self.lora_A)
        if self.chunks == 1:
            delta = F.linear(h, self.lora_B[0])
        else:
            delta = torch.einsum("...cr,cor->...co", h.unflatten(-1, (self.chunks, self.rank)), self.lora_B).flatten(-2)
        return y + delta * self.scale

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """``base.weight + scale * B @ A`` computed in fp32 and rounded to the weight's dtype; refuses a result
        with NaN or inf (broken adapters, or a sum beyond fp16's range), as peft's ``safe_merge`` does."""
        weight = self.base.weight
        merged = (weight.float() + self.delta_weight()).to(weight.dtype)
        if merged.is_meta:  # a model built for counting or deferred loading holds no values to check
            return merged
        bad = int((~torch.isfinite(merged)).sum())
        if bad:
            raise NonFiniteMergeError(f"merging the LoRA adapters gives {bad} non-finite (NaN/inf) of {merged.numel()} "
                                      f"weights in {weight.dtype}; the weights are left unmerged")
        return merged

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapters into the frozen weight (fp32 math, cast back to the weight's dtype). The result is
        checked before it is written, so a refused merge leaves the layer as it was."""
        if not self.merged:
            self.base.weight.copy_(self.merged_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take merged adapters out of the frozen weight again (exact in fp32; rounded once more in bf16/fp16)."""
        if self.merged:
            weight = self.base.weight
            weight.copy_((weight.float() - self.delta_weight()).to(weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, chunks={self.chunks}, merged={self.merged}"


def lora_layers(module: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    for name, child in module.named_modules():
        if isinstance(child, LoRALinear):
            yield name, child


def attach_lora(blocks: nn.Module, rank: int, alpha: float) -> None:
    """Wrap every ``nn.Linear`` inside ``blocks`` (q/k/v, proj, fc1, fc2 -- or w12/w3 for SwiGLU) with LoRA."""
    targets = [(name, m) for name, m in blocks.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        chunks = 3 if child == "qkv" else 1
        setattr(blocks.get_submodule(parent_name), child, LoRALinear(linear, rank, alpha, chunks=chunks))


def merge_lora(module: nn.Module) -> None:
    """Merge every adapter inside ``module``, or none: all merged weights are checked before the first is written,
    and a non-finite one is a :class:`NonFiniteMergeError` naming its layer."""
    pending = [(name, layer) for name, layer in lora_layers(module) if not layer.merged]
    for name, layer in pending:
        try:
            layer.merged_weight()
        except NonFiniteMergeError as e:
            raise NonFiniteMergeError(f"LoRA layer {name or type(module).__name__}: {e}") from None
    for _, layer in pending:
        layer.merge()


def unmerge_lora(module: nn.Module) -> None:
    for _, layer in lora_layers(module):
        layer.unmerge()


def strip_lora(module: nn.Module) -> None:
    """Merge every adapter and put the plain frozen ``nn.Linear`` back: the graph of the bare ViT, zero overhead."""
    merge_lora(module)
    for name, layer in list(lora_layers(module)):
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name), child, layer.base)  # "" is module itself
