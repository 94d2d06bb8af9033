"""The one entry point that picks what runs the network for a device and precision (see docs/speed.md).

* ``fp32``: :class:`~lorat_plugin.engine.network.TorchNetwork`, the merged model as it is (the exact path).
* ``bf16`` / ``fp16``: :class:`~lorat_plugin.engine.cast.CastNetwork`, stored low-precision weights;
  ``autocast=True`` gives the reference's AMP instead (fp32 weights).
* ``compile=True``: ``torch.compile`` of that copy per static batch bucket; minutes per batch size on a small CPU,
  so never on by default.
* ``cuda_graphs=True`` (CUDA only): :class:`~lorat_plugin.engine.cuda_graphs.CUDAGraphNetwork` around either.
"""
from __future__ import annotations

from typing import Any

import torch

from ..model import LoRAT
from .cast import CastNetwork
from .cuda_graphs import CUDAGraphNetwork
from .network import NetworkBackend, TorchNetwork
from .precision import resolve_device, resolve_precision


def build_network(model: LoRAT, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
                  *, autocast: bool = False, compile: bool = False, cuda_graphs: bool = False) -> NetworkBackend:
    """The network backend for ``model`` on ``device`` at ``dtype`` (resolved by
    :func:`~lorat_plugin.engine.precision.resolve_precision`); the flags pick the backends the module docstring
    lists (``autocast`` is slower, kept for comparisons; measure ``compile`` with ``lorat benchmark --compile``)."""
    device = resolve_device(device)
    dtype = resolve_precision(dtype, device)
    if autocast and (compile or dtype == torch.int8):
        raise ValueError("autocast runs fp32 weights; it cannot be combined with compile or int8")
    if cuda_graphs and device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
    if autocast or (dtype == torch.float32 and not compile):
        network: NetworkBackend = TorchNetwork(model, device, dtype)
    else:
        network = CastNetwork(model, device, dtype, compile=compile)
    if cuda_graphs:
        network = CUDAGraphNetwork(network)
    return network


def describe_network(network: Any) -> str:
    """One line naming a backend, its device and precision (for logs and the benchmark's table)."""
    inner = network.inner if isinstance(network, CUDAGraphNetwork) else network
    dtype = str(getattr(inner, "dtype", "")).replace("torch.", "")
    if isinstance(inner, CastNetwork) and inner.dtype == torch.int8:
        name = f"int8 blocks (oneDNN, dynamic activations) + {next(inner.module.head.parameters()).dtype}"
    elif isinstance(inner, CastNetwork):
        name = (f"stored {dtype} weights" + (" + oneDNN fused blocks" if inner.onednn else "")
                + (" + torch.compile" if inner.compiled else ""))
    elif isinstance(inner, TorchNetwork):
        name = "fp32 weights" if inner.dtype == torch.float32 else f"{dtype} autocast"
    else:
        name = type(inner).__name__
    graphs = ", CUDA graphs" if inner is not network else ""
    return f"{name}{graphs} on {network.device}".replace("torch.", "")

