"""Transformer blocks rebuilt on oneDNN's fused linear kernels (``torch.ops.mkldnn._linear_pointwise``, what
``torch.compile``'s CPU backend emits), for bf16 inference on x86 CPUs: weights pre-packed once (for one frame's
tokens), GELU applied and the residual added by the linear kernels as they write, LayerScale folded into ``proj`` /
``fc2``. Gains and agreement with fp32: docs/speed.md. Only blocks of the shape LoRAT uses are rebuilt
(:func:`fusable`); the packed weights are opaque: such a module cannot be deep-copied or moved.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import GluMlp, LayerScale, Mlp
from timm.models.vision_transformer import Attention, Block
from torch import nn

log = logging.getLogger(__name__)


def onednn_available() -> bool:
    """True when this torch build has oneDNN's fused linear kernels (x86 CPU builds do)."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")
            and hasattr(mkldnn, "_reorder_linear_weight"))


def fusable(block: nn.Module) -> bool:
    """True for a timm ``Block`` this module can rebuild exactly: plain linear layers (LoRA merged), no q/k norm,
    no attention gate, GELU ``Mlp`` or SiLU-gated ``GluMlp`` (gate first)."""
    if type(block) is not Block or type(block.attn) is not Attention:
        return False
    attn, mlp = block.attn, block.mlp
    linears = [attn.qkv, attn.proj, mlp.fc1, mlp.fc2]
    if any(type(layer) is not nn.Linear or layer.bias is None for layer in linears):
        return False
    plain = (attn.q_norm, attn.k_norm, getattr(attn, "norm", None), mlp.norm, block.drop_path1, block.drop_path2)
    if getattr(attn, "gate", None) is not None or not all(m is None or isinstance(m, (nn.Identity, nn.Dropout))
                                                           for m in plain):
        return False
    if not all(isinstance(ls, (LayerScale, nn.Identity)) for ls in (block.ls1, block.ls2)):
        return False
    if type(mlp) is Mlp:
        return isinstance(mlp.act, nn.GELU) and mlp.act.approximate == "none"
    return type(mlp) is GluMlp and isinstance(mlp.act, nn.SiLU) and not mlp.gate_last


def _folded(linear: nn.Linear, ls: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 weight and bias of ``linear`` with a following LayerScale folded in: ls * (W x + b) == (ls W) x + ls b
    (products in fp32, rounded once by the packing)."""
    weight, bias = linear.weight.detach().float(), linear.bias.detach().float()
    if isinstance(ls, LayerScale):
        gamma = ls.gamma.detach().float()
        weight, bias = weight * gamma[:, None], bias * gamma
    return weight, bias


class OneDNNBlock(nn.Module):
    """``x + ls1 * attn(norm1(x))`` then ``x + ls2 * mlp(norm2(x))`` (a timm ``Block`` in eval mode) with fused,
    pre-packed bf16 linear kernels. Built from a block that :func:`fusable` accepts."""
    logits_bytes = 5 << 19  # 2.5 MiB: one frame's logits of a 12-head, 320-token attention
    shift_logits = True  # see grouped_attention
    # grouped_attention's several calls pay from the 224 variants' 320 tokens; at the demo model's 80 the fused
    # kernel's one call is faster (docs/speed.md, "Where the time goes")
    grouped_from_tokens = 320

    def __init__(self, block: Block, tokens: int, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if not fusable(block):
            raise ValueError("OneDNNBlock rebuilds plain timm Blocks only (see fusable())")
        self.norm1, self.norm2 = block.norm1, block.norm2
        self.num_heads = block.attn.num_heads
        self.gated = type(block.mlp) is GluMlp
        self._tokens, self._dtype = max(int(tokens), 1), dtype
        attn, mlp = block.attn, block.mlp
        self.qkv = self._pack(*_folded(attn.qkv))
        self.proj = self._pack(*_folded(attn.proj, block.ls1))
        self.fc1 = self._pack(*_folded(mlp.fc1))
        self.fc2 = self._pack(*_folded(mlp.fc2, block.ls2))

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> Any:
        """The layer as :meth:`_linear` takes it (here: the packed weight and the bias; subclasses their own)."""
        weight = torch.ops.mkldnn._reorder_linear_weight(weight.to(self._dtype), self._tokens)
        return weight, bias.to(self._dtype)

    def _linear(self, x: torch.Tensor, packed: Any, gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, *packed, "add")
        return torch.ops.mkldnn._linear_pointwise(x, *packed, "gelu" if gelu else "none", [], "none" if gelu else "")

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self._dtype != torch.bfloat16 or q.shape[-2] < self.grouped_from_tokens:
            return F.scaled_dot_product_attention(q, k, v)
        # bf16 matrix products per group of heads, faster than the fused CPU kernel (which computes in fp32 on CPUs
        # without AMX); the shifted logits keep its accuracy (docs/speed.md, "Where the time goes").
        return grouped_attention(q, k, v, self.logits_bytes, self.shift_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        x = x.reshape(batch * tokens, dim)
        qkv = self._linear(self.norm1(x), self.qkv)
        q, k, v = qkv.view(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attended = self._attention(q, k, v).transpose(1, 2).reshape(batch * tokens, dim)
        x = self._linear(attended, self.proj, residual=x)
        if self.gated:
            gate, up = self._linear(self.norm2(x), self.fc1).chunk(2, dim=-1)
            hidden = F.silu(gate) * up
        else:
            hidden = self._linear(self.norm2(x), self.fc1, gelu=True)
        x = self._linear(hidden, self.fc2, residual=x)
        return x.view(batch, tokens, dim)

    def __deepcopy__(self, memo: dict) -> "OneDNNBlock":
        raise TypeError("OneDNNBlock holds packed oneDNN weights that cannot be copied; build a new one")


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, logits_bytes: int,
                      shift_logits: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as two matrix products per group of heads, at the inputs' precision; each
    group's logits fit ``logits_bytes``: in cache, no fresh pages per call. Each frame of the batch runs alone, with
    the same products whatever the batch: its result does not depend on the batch size.

    bf16 logits carry a rounding error relative to their size, and the largest logits, the ones that count after
    the softmax, are the most affected. ``shift_logits`` subtracts from each query's logits an estimate of their
    largest one (the largest over every ``_SHIFT_STRIDE``-th key) inside the product, where it accumulates in fp32,
    before the rounding: the softmax is unchanged by the shift, and the largest logits come out near zero, where
    bf16 is fine-grained."""
    batch, heads, tokens, _ = q.shape
    q = q * q.shape[-1] ** -0.5  # a power of two for LoRAT's head size 64: exact
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    step = max(1, logits_bytes // (q.element_size() * tokens * tokens))
    if shift_logits:
        # q gains the column -shift and k a column of ones (and a zero column each, for an even depth): the
        # product then holds q k^T - shift
        q = torch.cat([q, q.new_zeros(batch, heads, tokens, 2)], dim=-1)
        k = torch.cat([k, k.new_ones(batch, heads, tokens, 1), k.new_zeros(batch, heads, tokens, 1)], dim=-1)
    for b in range(batch):
        for h in range(0, heads, step):
            group = slice(h, h + step)
            if shift_logits:
                sampled_keys = k[b, group, ::_SHIFT_STRIDE]
                rough = q[b, group] @ sampled_keys.transpose(-1, -2)  # the depth columns are 0 times 1 here
                q[b, group, :, -2] = -rough.float().amax(dim=-1)  # fp32's amax: three times bf16's speed
            logits = q[b, group] @ k[b, group].transpose(-1, -2)
            torch.matmul(torch.softmax(logits, dim=-1), v[b, group], out=out[b, group])
    return out


_SHIFT_STRIDE = 4  # grouped_attention's shift: a quarter of the first product's work


def fuse_blocks(blocks: nn.ModuleList, tokens: int, dtype: torch.dtype = torch.bfloat16,
                kind: type[OneDNNBlock] = OneDNNBlock) -> int:
    """Replace, in place, every block of ``blocks`` that :func:`fusable` accepts by a ``kind`` block (default
    :class:`OneDNNBlock`; weights packed for ``tokens`` rows). Returns how many were replaced (0 without oneDNN)."""
    if not onednn_available():
        return 0
    fused = 0
    for i, block in enumerate(blocks):
        if fusable(block):
            blocks[i] = kind(block, tokens, dtype)
            fused += 1
    if fused < len(blocks):
        log.info("oneDNN fused %d of %d blocks (the others are not plain timm blocks)", fused, len(blocks))
    return fused
