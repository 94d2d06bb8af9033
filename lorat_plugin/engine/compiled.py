"""``torch.compile`` around a backend's module, one static graph per batch bucket (also used by CUDA graphs).

A batch is padded up to the next bucket (repeating its last row, real data: no NaN/inf risk) and the padding cut off
the outputs, so a shrinking batch at the end of an evaluation costs at most a few extra compiles / captures. Behind
the per-sequence wrapper (:mod:`~lorat_plugin.engine.per_sequence`, the CPU default) only the batch of one is ever
compiled.
"""
from __future__ import annotations

import torch

from ..model.network import NetworkOutput
from .network import TorchNetwork

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


class CompiledNetwork:
    """``torch.compile(dynamic=False)`` of a :class:`~lorat_plugin.engine.network.TorchNetwork`'s module, called per
    batch bucket (:func:`bucket_size`); minutes per bucket on a small CPU, so never a default."""

    def __init__(self, inner: TorchNetwork) -> None:
        if inner.autocast:
            raise ValueError("autocast runs fp32 weights; it cannot be combined with compile")
        self.inner = inner
        self.config, self.device, self.dtype = inner.config, inner.device, inner.dtype
        self.description = f"{inner.description} + torch.compile"
        # One graph per bucket: past dynamo's recompile limit (8 by default, fewer than the buckets) the next batch
        # size would silently run uncompiled. Only ever raised.
        dynamo = torch._dynamo.config
        name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
        setattr(dynamo, name, max(getattr(dynamo, name), 2 * len(BATCH_BUCKETS)))
        # Freezing folds the (constant) weights into the graph and lets inductor pre-pack them for oneDNN on CPU.
        options = {"freezing": True} if self.device.type == "cpu" else None
        self._forward = torch.compile(inner.module, dynamic=False, options=options)

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        batch = x.shape[0]
        z, x, z_feat_mask = pad_batch((z, x, z_feat_mask), bucket_size(batch))
        with torch.inference_mode():
            score_map, boxes = self._forward(z, x, z_feat_mask)
        return NetworkOutput(score_map[:batch], boxes[:batch])
