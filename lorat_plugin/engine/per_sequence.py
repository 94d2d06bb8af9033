"""Batch invariance: each sequence's network call is the same whatever else is in the batch.

Matrix-product kernels pick their blocking, and so their summation order, by the number of rows: on an AMX CPU a
sequence's outputs at batch 1 differ from the same sequence's inside a batch of 8 (bf16 score logits by ~1e-4), and
int8's dynamic activation scale, one per call, would couple every sequence in a batch. Calling the network once per
sequence removes both: a sequence's boxes are then bit-identical whatever ``--batch-size``, the torchrun world size,
the other sequences in flight or the resume point (on one CPU and library version; nor does the thread count where
``tests/test_threads.py`` passes). The price, measured with ``lorat benchmark --compare batched``, is in docs/speed.md
("Batch invariance").
"""
from __future__ import annotations

import torch

from ..model.network import NetworkOutput
from .network import NetworkBackend


class PerSequenceNetwork:
    """Calls ``inner`` once per batch element (a batch of one each) and stacks the outputs."""

    def __init__(self, inner: NetworkBackend) -> None:
        self.inner = inner
        self.config, self.device, self.dtype = inner.config, inner.device, inner.dtype
        self.description = f"{inner.description}, one call per sequence"

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        if x.shape[0] == 1:
            return self.inner(z, x, z_feat_mask)
        outputs = [self.inner(z[i:i + 1], x[i:i + 1], z_feat_mask[i:i + 1]) for i in range(x.shape[0])]
        return NetworkOutput(torch.cat([o.score_map for o in outputs]), torch.cat([o.boxes for o in outputs]))
