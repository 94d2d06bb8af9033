"""CUDA graphs: the network's forward captured once per batch bucket and replayed, which removes the per-kernel
launch cost that dominates batch-1 latency on fast GPUs."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from ..model import ModelConfig
from ..model.network import NetworkOutput
from .compiled import BATCH_BUCKETS, bucket_size, pad_batch
from .network import NetworkBackend

log = logging.getLogger(__name__)


class CUDAGraphNetwork:
    """Replays a CUDA graph of ``inner``'s forward (any torch backend on a CUDA device) per batch bucket.

    A new bucket is first run a few times on a side stream (compiles, kernel choices and lazy allocations stay out of
    the capture), then captured on the network's device; later calls copy inputs into the buffers and replay. The
    buffers are made outside inference mode (usable in and out of it); outputs are copied out, so they stay valid
    after the next call. All captures share one memory pool."""

    WARMUP_CALLS = 3

    def __init__(self, inner: NetworkBackend, *, max_graphs: int = len(BATCH_BUCKETS)) -> None:
        if inner.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the network is on {inner.device}")
        self.inner = inner
        self.config: ModelConfig = inner.config
        self.device: torch.device = inner.device
        self.dtype: torch.dtype = inner.dtype
        self.description = f"{inner.description}, CUDA graphs"
        self.max_graphs = max_graphs
        # batch bucket -> (static input buffers, the graph's static outputs, its replay)
        self._graphs: dict[int, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], Callable[[], None]]] = {}
        self._pool: Any = None

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        batch = x.shape[0]
        size = bucket_size(batch)
        captured = self._graphs.get(size)
        if captured is None:
            if len(self._graphs) >= self.max_graphs:
                return self.inner(z, x, z_feat_mask)  # an unusual batch size: eager rather than another graph
            captured = self._graphs[size] = self._capture(pad_batch((z, x, z_feat_mask), size))
        inputs, (score_map, boxes), replay = captured
        with torch.cuda.device(self.device):
            for buffer, value in zip(inputs, pad_batch((z, x, z_feat_mask), size)):
                buffer.copy_(value, non_blocking=True)
            replay()
        return NetworkOutput(score_map[:batch].clone(), boxes[:batch].clone())

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        with torch.cuda.device(self.device):
            with torch.inference_mode(False):
                static = tuple(t.clone() for t in inputs)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(self.WARMUP_CALLS):
                    self.inner(*static)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, stream=stream):
                outputs = self.inner(*static)
        log.info("captured a CUDA graph for batch size %d on %s", static[1].shape[0], self.device)
        return static, tuple(outputs), graph.replay
