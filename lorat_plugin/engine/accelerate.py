"""Fast network backends for the tracking engine: low-precision weights, ``torch.compile`` and CUDA graphs.

:func:`build_network` picks what runs the network for a device and precision (see docs/speed.md):

* ``fp32``: :class:`~lorat_plugin.engine.network.TorchNetwork`, the merged model as it is (the exact path).
* ``bf16`` / ``fp16``: :class:`CastNetwork`, a copy of the merged model whose patch embedding, transformer blocks and
  the head's hidden layers *store* their weights in the low precision, so no weight is converted per call (autocast
  re-casts every weight on every forward: on CPU that costs as much as the matrix products themselves). The sums
  of the patch tokens with the position / token-type embeddings, the final norm and the head's two output layers
  stay in float32: rounding the score logits and box offsets to 8 mantissa bits is what moves boxes most, and
  these layers cost almost nothing. ``autocast=True`` gives the reference's AMP instead (fp32 weights).
* ``compile=True``: ``torch.compile`` of that module (inductor; weights frozen and pre-packed on CPU). It takes up to
  a minute per batch size on a small CPU for about 8 % there, so it is never on by default.
* ``cuda_graphs=True`` (CUDA only): the forward is captured once per batch size and replayed, which removes the
  per-kernel launch cost that dominates batch-1 latency on fast GPUs.

With ``compile`` or CUDA graphs every call runs at a static batch size: a batch is padded up to the next of
:data:`BATCH_BUCKETS` (repeating its last element) and the padding is cut off the outputs, so a shrinking batch at
the end of an evaluation costs at most a few extra compiles / captures.

The default precision (``dtype=None``) is :func:`default_dtype`: fp16 on CUDA (the reference's choice), bf16 on
CPUs that multiply bf16 natively (AVX512-BF16 or AMX), fp32 everywhere else.
"""
from __future__ import annotations

import copy
import ctypes
import logging
import os
import platform
from typing import Any, Callable

import torch
from torch import nn

from ..model import LoRAT, ModelConfig
from .network import NetworkBackend, TorchNetwork, resolve_device, resolve_dtype
from .int8 import Int8Block, int8_available
from .onednn import OneDNNBlock, fuse_blocks, onednn_available

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


# ---- what the hardware does well --------------------------------------------------------------------------------

def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later):
    there bf16 matrix products run at least twice as fast as fp32. Elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


def default_dtype(device: torch.device | str) -> torch.dtype:
    """The precision the engine uses when none is asked for: fp16 on CUDA, bf16 on CPUs with native bf16 (AMX /
    AVX512-BF16), fp32 elsewhere (other CPUs, Apple MPS)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64") and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


# ---- the low-precision copy of the model ------------------------------------------------------------------------

def _cast_inputs(dtype: torch.dtype) -> Callable:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(dtype), *args[1:])
    return hook


def _output_to_float(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def cast_model(model: LoRAT, dtype: torch.dtype, device: torch.device | str | None = None, *,
               onednn: bool = False, int8: bool = False) -> LoRAT:
    """A copy of a merged ``model`` for low-precision inference (see the module docstring for what stays fp32).

    The copy shares the float32 tensors that stay float32 with ``model`` (they are never written) and holds its own
    low-precision versions of the rest, so it costs half the model's memory in bf16/fp16, not a second copy.
    ``onednn=True`` (bf16 on CPU) rebuilds the transformer blocks on oneDNN's fused kernels
    (:mod:`lorat_plugin.engine.onednn`), ``int8=True`` on oneDNN's int8 kernels (:mod:`lorat_plugin.engine.int8`,
    everything else at ``dtype``: bf16 or fp32); such a copy cannot be deep-copied."""
    if getattr(model, "has_lora", False):
        raise ValueError("cast_model needs a merged model (model.strip_lora() or load_model(merge=True))")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    low: list[nn.Module] = [model.patch_embed, model.blocks]
    for mlp in (model.head.cls_mlp, model.head.reg_mlp):
        low += list(mlp.layers[:-1])
    low_ids = {id(p) for module in low for p in module.parameters()}
    memo: dict[int, Any] = {}
    for p in model.parameters():
        dtype_p = dtype if id(p) in low_ids else p.dtype
        memo[id(p)] = nn.Parameter(p.detach().to(device=device, dtype=dtype_p), requires_grad=False)
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
    fast.patch_embed.register_forward_hook(_output_to_float)
    fast.blocks[0].register_forward_pre_hook(_cast_inputs(dtype))
    fast.norm.register_forward_pre_hook(_cast_inputs(torch.float32))
    for mlp in (fast.head.cls_mlp, fast.head.reg_mlp):
        mlp.layers[0].register_forward_pre_hook(_cast_inputs(dtype))
        mlp.layers[-1].register_forward_pre_hook(_cast_inputs(torch.float32))
    return fast


def _merged(model: LoRAT) -> LoRAT:
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "config", None), ModelConfig):
        raise TypeError(f"expected a LoRAT model (lorat_plugin.model.build_model / load_model), got {type(model)}")
    if getattr(model, "has_lora", False):
        log.info("the model carries unmerged LoRA adapters: running a merged copy")
        model = copy.deepcopy(model)
        model.strip_lora()
    return model


class CastNetwork:
    """The merged LoRAT with bf16/fp16 weights (see :func:`cast_model`); the user's model is not changed.

    ``module`` is what runs; ``model`` is the merged model it was made from (as :class:`TorchNetwork` names it).
    ``dtype=torch.float32`` gives an fp32 copy (useful with ``compile``). ``onednn`` (default: on for bf16 on a
    CPU with native bf16 whose torch has oneDNN, unless compiling) runs the blocks on oneDNN's fused kernels."""

    def __init__(self, model: LoRAT, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None, *, compile: bool = False,
                 onednn: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype if dtype is not None else default_dtype(self.device), self.device)
        self.model = model = _merged(model)
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
            # Freezing folds the (constant) weights into the graph and lets inductor pre-pack them for oneDNN on CPU.
            options = {"freezing": True} if self.device.type == "cpu" else None
            self._forward = torch.compile(self.module, dynamic=False, options=options)

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        if self.compiled:  # one compiled graph per bucket, not per batch size
            z, x, z_feat_mask = pad_batch((z, x, z_feat_mask), bucket_size(batch))
        with torch.inference_mode():
            out = self._forward(z, x, z_feat_mask)
        return out["score_map"][:batch], out["boxes"][:batch]


# ---- static batch sizes ------------------------------------------------------------------------------------------

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


# ---- CUDA graphs -------------------------------------------------------------------------------------------------

class _CapturedForward:
    """One batch size: static input buffers, the captured graph, its static outputs."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], outputs: tuple[torch.Tensor, ...], replay: Callable[[], None]):
        self.inputs, self.outputs, self.replay = inputs, outputs, replay


class CUDAGraphNetwork:
    """Replays a CUDA graph of ``inner``'s forward (any torch backend on a CUDA device) per batch bucket.

    The first call at a new bucket runs ``inner`` a few times on a side stream (warm-up: cuBLAS/cuDNN pick their
    kernels, lazy allocations happen), then captures one forward; later calls copy the inputs into the captured
    buffers and replay. Outputs are copied out of the graph's buffers, so they stay valid after the next call.
    All captures share one memory pool.
    """

    WARMUP_CALLS = 3

    def __init__(self, inner: NetworkBackend, *, max_graphs: int = len(BATCH_BUCKETS)) -> None:
        if inner.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the network is on {inner.device}")
        self.inner = inner
        self.config: ModelConfig = inner.config
        self.device: torch.device = inner.device
        self.dtype: torch.dtype = inner.dtype
        self.max_graphs = max_graphs
        self._graphs: dict[int, _CapturedForward] = {}
        self._pool: Any = None

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        size = bucket_size(batch)
        captured = self._graphs.get(size)
        if captured is None:
            if len(self._graphs) >= self.max_graphs:
                return self.inner(z, x, z_feat_mask)  # an unusual batch size: eager rather than another graph
            captured = self._graphs[size] = self._capture(pad_batch((z, x, z_feat_mask), size))
        for buffer, value in zip(captured.inputs, pad_batch((z, x, z_feat_mask), size)):
            buffer.copy_(value, non_blocking=True)
        captured.replay()
        score_map, boxes = captured.outputs
        return score_map[:batch].clone(), boxes[:batch].clone()

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _CapturedForward:
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
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self.inner(*static)
        log.info("captured a CUDA graph for batch size %d", static[1].shape[0])
        return _CapturedForward(static, tuple(outputs), graph.replay)


# ---- the one entry point -----------------------------------------------------------------------------------------

_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep large CPU tensors in glibc's heap instead of fresh ``mmap`` pages.

    glibc serves allocations above 128 KiB-32 MiB with ``mmap`` and returns them with ``munmap``, so every activation
    of a batched forward pass (16 MB per MLP layer at batch 8 for B-224) costs page faults and zeroing: measured on a
    2-core Xeon, batch 8 ran no faster per frame than batch 1 until this was raised. Raising the mmap and trim
    thresholds (what jemalloc/tcmalloc users get by default) lets freed blocks be reused. Process-wide, idempotent,
    Linux/glibc only; set ``LORAT_NO_MALLOC_TUNING=1`` to leave the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("LORAT_NO_MALLOC_TUNING") or platform.system() != "Linux":
        return _ALLOCATOR_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    log.debug("glibc allocator tuned for large tensors: %s", _ALLOCATOR_TUNED)
    return _ALLOCATOR_TUNED


def build_network(model: LoRAT, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
                  *, autocast: bool = False, compile: bool = False, cuda_graphs: bool = False) -> NetworkBackend:
    """The network backend for ``model`` on ``device`` at ``dtype`` (``None``: :func:`default_dtype`).

    Args:
        autocast: bf16/fp16 as the reference runs it (autocast around fp32 weights) instead of stored
            low-precision weights: slower, kept for comparisons.
        compile: ``torch.compile`` the network (about a minute per batch size on a small CPU; measure with
            ``lorat benchmark --compile`` before using it).
        cuda_graphs: capture and replay CUDA graphs (CUDA devices only).
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype if dtype is not None else default_dtype(device), device)
    if device.type == "cpu":
        tune_cpu_allocator()
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
    parts = []
    inner = network
    if isinstance(network, CUDAGraphNetwork):
        parts.append("CUDA graphs")
        inner = network.inner
    if isinstance(inner, CastNetwork) and inner.dtype == torch.int8:
        parts.insert(0, f"int8 blocks (oneDNN, dynamic activations) + {next(inner.module.head.parameters()).dtype}"
                     .replace("torch.", ""))
    elif isinstance(inner, CastNetwork):
        name = "stored " + str(inner.dtype).replace("torch.", "") + " weights"
        name += " + oneDNN fused blocks" if inner.onednn else ""
        parts.insert(0, name + (" + torch.compile" if inner.compiled else ""))
    elif isinstance(inner, TorchNetwork):
        dtype = str(inner.dtype).replace("torch.", "")
        parts.insert(0, "fp32 weights" if inner.dtype == torch.float32 else f"{dtype} autocast")
    else:
        parts.insert(0, type(inner).__name__)
    return f"{', '.join(parts)} on {network.device}"


__all__ = ["BATCH_BUCKETS", "CastNetwork", "CUDAGraphNetwork", "build_network", "bucket_size", "cast_model",
           "cpu_has_native_bf16", "default_dtype", "describe_network", "pad_batch", "tune_cpu_allocator"]
