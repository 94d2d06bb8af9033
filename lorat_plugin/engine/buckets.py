"""Static batch sizes for ``torch.compile`` and CUDA graphs: a batch is padded up to the next of
:data:`BATCH_BUCKETS` (repeating its last element) and the padding is cut off the outputs, so a shrinking batch at
the end of an evaluation costs at most a few extra compiles / captures."""
from __future__ import annotations

import torch

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def bucket_size(batch: int) -> int:
    """The smallest of :data:`BATCH_BUCKETS` that holds ``batch`` (multiples of the largest beyond it)."""
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")
    for size in BATCH_BUCKETS:
        if batch <= size:
            return size
    top = BATCH_BUCKETS[-1]
    return -(-batch // top) * top


def pad_batch(tensors: tuple[torch.Tensor, ...], size: int) -> tuple[torch.Tensor, ...]:
    """Each tensor padded along dim 0 to ``size`` rows by repeating its last row (real data: no NaN/inf risk)."""
    batch = tensors[0].shape[0]
    if batch == size:
        return tensors
    return tuple(torch.cat((t, t[-1:].expand(size - batch, *t.shape[1:])), dim=0) for t in tensors)
