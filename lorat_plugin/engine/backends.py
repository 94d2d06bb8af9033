"""The backend table: which code runs the network for a device and precision, decided once.

:func:`build_network` resolves the device (:func:`lorat_plugin.devices.parse_device`) and the precision
(:func:`~lorat_plugin.engine.precision.resolve_precision`) once, takes the precision's row of :data:`BACKENDS` and
wraps what the row builds with the options asked for; the backends take resolved values and decide nothing again.

| precision | devices | what runs |
|---|---|---|
| ``fp32`` | any | the merged model as it is (the exact path; TF32 off on CUDA) |
| ``bf16`` | any | stored bf16 weights; on a CPU that multiplies bf16 natively, the blocks on oneDNN's fused kernels |
| ``fp16`` | any | stored fp16 weights (the CUDA default, as the reference) |
| ``int8`` | CPU | int8 block products on oneDNN's quantised kernels, the rest bf16 (fp32 without native bf16) |

Options, around any row that can take them: ``autocast`` (bf16/fp16 as the reference's AMP around fp32 weights,
slower), ``compile`` (``torch.compile`` per batch bucket), ``cuda_graphs`` (CUDA only), ``per_sequence`` (one
network call per sequence: batch invariance, the CPU default; see :mod:`~lorat_plugin.engine.per_sequence`).

A new precision is one row here (:class:`Backend`), the module its ``build`` lives in, tests and docs
(docs/architecture.md, "How to add").
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch

from ..devices import parse_device
from ..model import LoRAT
from .cast import cast_model
from .compiled import CompiledNetwork
from .cuda_graphs import CUDAGraphNetwork
from .int8 import Int8Block, int8_available
from .network import NetworkBackend, TorchNetwork, merged_model
from .onednn import OneDNNBlock, fuse_blocks, onednn_available
from .per_sequence import PerSequenceNetwork
from .precision import cpu_has_native_bf16, resolve_precision


@dataclass(frozen=True)
class BackendOptions:
    """How to run a row; every field has the default that :func:`build_network` documents."""

    autocast: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    per_sequence: bool | None = None  # None: on the CPU (batch invariance), batched on GPUs
    fused: bool = True                # bf16 on a CPU with native bf16: oneDNN's fused blocks (False: eager kernels)


@dataclass(frozen=True)
class Backend:
    """One row of the table: a precision, the device types it runs on, and how its network is built from a merged
    model on a resolved device."""

    precision: str
    dtype: torch.dtype
    devices: tuple[str, ...]
    build: Callable[[LoRAT, torch.device, BackendOptions], TorchNetwork]
    autocast: bool = False  # whether ``autocast`` can run this precision (around fp32 weights)


def _fp32(model: LoRAT, device: torch.device, options: BackendOptions) -> TorchNetwork:
    return TorchNetwork(model.to(device), device, torch.float32, "fp32 weights")


def _stored(dtype: torch.dtype, name: str) -> Callable[[LoRAT, torch.device, BackendOptions], TorchNetwork]:
    def build(model: LoRAT, device: torch.device, options: BackendOptions) -> TorchNetwork:
        module = cast_model(model, dtype, device)
        description = f"stored {name} weights"
        # oneDNN's bf16 kernels need AMX / AVX512-BF16 (elsewhere bf16 is slow anyway); compile fuses on its own
        if (dtype == torch.bfloat16 and device.type == "cpu" and options.fused and not options.compile
                and onednn_available() and cpu_has_native_bf16()):
            if fuse_blocks(module.blocks, model.config.tokens, dtype, OneDNNBlock):
                description += " + oneDNN fused blocks"
        return TorchNetwork(module, device, dtype, description)
    return build


def int8_compute_dtype() -> torch.dtype:
    """The precision of the int8 network's other parts (attention, norms, the residual stream, the head's hidden
    layers): bf16 on a CPU that multiplies it natively, else fp32."""
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def _int8(model: LoRAT, device: torch.device, options: BackendOptions) -> TorchNetwork:
    if not int8_available():
        raise ValueError("int8 needs oneDNN's quantised kernels (an x86 torch build)")
    compute = int8_compute_dtype()
    module = cast_model(model, compute, device)
    if fuse_blocks(module.blocks, model.config.tokens, compute, Int8Block) < len(module.blocks):
        raise ValueError("int8 needs plain merged timm blocks")
    name = str(compute).replace("torch.", "")
    return TorchNetwork(module, device, torch.int8, f"int8 blocks (oneDNN, dynamic activations) + {name}")


BACKENDS: dict[str, Backend] = {row.precision: row for row in (
    Backend("fp32", torch.float32, ("cpu", "cuda", "mps"), _fp32),
    Backend("bf16", torch.bfloat16, ("cpu", "cuda", "mps"), _stored(torch.bfloat16, "bf16"), autocast=True),
    Backend("fp16", torch.float16, ("cpu", "cuda", "mps"), _stored(torch.float16, "fp16"), autocast=True),
    Backend("int8", torch.int8, ("cpu",), _int8),
)}


def backend_for(dtype: torch.dtype | str) -> Backend:
    """The row of a precision (a name such as ``bf16`` or a torch dtype)."""
    for row in BACKENDS.values():
        if row.dtype == dtype or row.precision == dtype:
            return row
    raise ValueError(f"{dtype} is not an inference precision: use {', '.join(BACKENDS)}")


def build_network(model: LoRAT, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
                  **options: bool | None) -> NetworkBackend:
    """The network backend for ``model`` on ``device`` (``None``: the best available) at ``dtype`` (``None``: the
    device's default precision), with the :class:`BackendOptions` given as keywords. A model with unmerged LoRA
    adapters runs as a merged copy; a merged model is moved to ``device`` (fp32) or copied (low precision)."""
    known = {f.name for f in fields(BackendOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown backend options {unknown}: use {sorted(known)}")
    chosen = BackendOptions(**options)
    device = parse_device(device)
    row = backend_for(resolve_precision(dtype, device))
    if chosen.autocast and not row.autocast:
        raise ValueError(f"autocast runs bf16 or fp16 around fp32 weights, not {row.precision}")
    if chosen.autocast and chosen.compile:
        raise ValueError("autocast runs fp32 weights; it cannot be combined with compile")
    if chosen.compile and row.precision == "int8":
        raise ValueError("int8 runs oneDNN's quantised kernels directly; it cannot be compiled")
    if chosen.cuda_graphs and device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
    model = merged_model(model)
    if chosen.autocast:
        name = row.precision
        network: NetworkBackend = TorchNetwork(model.to(device), device, row.dtype, f"{name} autocast", autocast=True)
    else:
        network = row.build(model, device, chosen)
    if chosen.compile:
        network = CompiledNetwork(network)
    if chosen.cuda_graphs:
        network = CUDAGraphNetwork(network)
    per_sequence = device.type == "cpu" if chosen.per_sequence is None else chosen.per_sequence
    if per_sequence:
        network = PerSequenceNetwork(network)
    return network
