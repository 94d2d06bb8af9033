"""The low-precision copy of the merged model, and the backend that runs it (optionally ``torch.compile``'d).

bf16 / fp16 weights are *stored* low (autocast re-casts every weight per forward, on a CPU about the cost of the
products). The patch embedding, blocks and head hidden layers run low; the embedding sums, final norm and the head's
output layers stay float32: rounding logits and box offsets to 8 mantissa bits moves boxes most, and they cost little.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from ..model import LoRAT, ModelConfig
from .int8 import Int8Block, int8_available
from .network import merged_model
from .onednn import OneDNNBlock, fuse_blocks, onednn_available
from .precision import cpu_has_native_bf16, full_fp32, resolve_device, resolve_precision


# Static batch sizes for torch.compile and CUDA graphs: a batch is padded up to the next bucket (repeating its last
# row, real data: no NaN/inf risk) and the padding cut off the outputs, so a shrinking batch at the end of an
# evaluation costs at most a few extra compiles / captures.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def bucket_size(batch: int) -> int:
    """The smallest of :data:`BATCH_BUCKETS` that holds ``batch`` (multiples of the largest beyond it)."""
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")
    top = BATCH_BUCKETS[-1]
    return next((size for size in BATCH_BUCKETS if batch <= size), -(-batch // top) * top)


def pad_batch(tensors: tuple[torch.Tensor, ...], size: int) -> tuple[torch.Tensor, ...]:
    batch = tensors[0].shape[0]
    if batch == size:
        return tensors
    return tuple(torch.cat((t, t[-1:].expand(size - batch, *t.shape[1:])), dim=0) for t in tensors)


def _cast_inputs(dtype: torch.dtype) -> Callable:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(dtype), *args[1:])
    return hook


def cast_model(model: LoRAT, dtype: torch.dtype, device: torch.device | str | None = None, *,
               onednn: bool = False, int8: bool = False) -> LoRAT:
    """A copy of a merged ``model`` for low-precision inference (what stays fp32: the module docstring), sharing its
    float32 tensors (never written): half the model's memory in bf16/fp16. ``onednn=True`` (bf16 on CPU) /
    ``int8=True`` (the rest at ``dtype``: bf16 or fp32) rebuild the blocks on oneDNN's fused / int8 kernels
    (:mod:`~lorat_plugin.engine.onednn`, :mod:`~lorat_plugin.engine.int8`); such a copy cannot be deep-copied."""
    if getattr(model, "has_lora", False):
        raise ValueError("cast_model needs a merged model (model.strip_lora() or load_model(merge=True))")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    low = [model.patch_embed, model.blocks, *model.head.cls_mlp.layers[:-1], *model.head.reg_mlp.layers[:-1]]
    low_ids = {id(p) for module in low for p in module.parameters()}
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach().to(device, dtype if id(p) in low_ids else p.dtype), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b.to(device)
    fast = copy.deepcopy(model, memo)
    fast.eval()
    if onednn or int8:
        if device.type != "cpu" or dtype not in ((torch.bfloat16, torch.float32) if int8 else (torch.bfloat16,)):
            raise ValueError(f"oneDNN {'int8' if int8 else 'fused'} blocks are for {'bf16/fp32' if int8 else 'bf16'} "
                             f"on CPU, not {dtype} on {device}")
        kind = Int8Block if int8 else OneDNNBlock  # weights packed for the rows of one frame
        if fuse_blocks(fast.blocks, model.config.tokens, dtype, kind) < len(fast.blocks) and int8:
            raise ValueError("int8 needs plain merged timm blocks and a torch build with oneDNN (x86)")
    # fp32 at the boundaries: images in, token sums, final norm, the head's output layers.
    fast.patch_embed.register_forward_pre_hook(_cast_inputs(dtype))
    fast.patch_embed.register_forward_hook(lambda module, args, output: output.float())
    fast.blocks[0].register_forward_pre_hook(_cast_inputs(dtype))
    fast.norm.register_forward_pre_hook(_cast_inputs(torch.float32))
    for mlp in (fast.head.cls_mlp, fast.head.reg_mlp):
        mlp.layers[0].register_forward_pre_hook(_cast_inputs(dtype))
        mlp.layers[-1].register_forward_pre_hook(_cast_inputs(torch.float32))
    return fast


class CastNetwork:
    """The merged LoRAT with bf16/fp16 weights (:func:`cast_model`; the user's model is not changed): ``module``
    runs, ``model`` is the merged model it was made from. ``dtype=torch.float32`` gives an fp32 copy (for
    ``compile``). ``onednn`` (default: bf16 on a CPU with native bf16 and oneDNN, unless compiling) fuses the blocks.
    ``compile`` runs ``torch.compile(dynamic=False)`` per batch bucket (:func:`bucket_size`)."""

    def __init__(self, model: LoRAT, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None, *, compile: bool = False,
                 onednn: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(dtype, self.device)
        self.model = model = merged_model(model)
        self.config: ModelConfig = model.config
        if onednn is None:  # oneDNN's bf16 kernels need AMX / AVX512-BF16 (elsewhere bf16 is slow anyway)
            onednn = (self.device.type == "cpu" and self.dtype == torch.bfloat16 and not compile
                      and onednn_available() and cpu_has_native_bf16())
        if self.dtype == torch.int8:
            if compile or not int8_available():
                raise ValueError("int8 needs oneDNN's quantised kernels (an x86 torch build) and cannot be compiled")
            compute = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
            self.module: nn.Module = cast_model(model, compute, self.device, int8=True)
        elif self.dtype == torch.float32:
            self.module = copy.deepcopy(model).to(self.device).eval()
        else:
            self.module = cast_model(model, self.dtype, self.device, onednn=onednn)
        # what was built, not what was asked: blocks of another shape, or a torch without oneDNN, stay eager
        self.onednn = any(type(block) is OneDNNBlock for block in self.module.blocks)
        self.compiled = bool(compile)
        self._forward: Callable = self.module
        if compile:
            # One graph per bucket: past dynamo's recompile limit (8 by default, fewer than the buckets) the next
            # batch size would silently run uncompiled. Only ever raised.
            dynamo = torch._dynamo.config
            name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
            setattr(dynamo, name, max(getattr(dynamo, name), 2 * len(BATCH_BUCKETS)))
            # Freezing folds the (constant) weights into the graph and lets inductor pre-pack them for oneDNN on CPU.
            options = {"freezing": True} if self.device.type == "cpu" else None
            self._forward = torch.compile(self.module, dynamic=False, options=options)

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        if self.compiled:  # one compiled graph per bucket, not per batch size
            z, x, z_feat_mask = pad_batch((z, x, z_feat_mask), bucket_size(batch))
        with torch.inference_mode(), full_fp32(self.device, self.dtype):
            out = self._forward(z, x, z_feat_mask)
        return out["score_map"][:batch], out["boxes"][:batch]
