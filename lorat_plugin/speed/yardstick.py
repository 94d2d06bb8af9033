"""What a network's time is compared with: the bare timm ViT blocks of the same size, the rate of this device's
matrix products, and the network's own FLOPs."""
from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from ..model import LoRAT, ModelConfig
from .timing import time_interleaved


def timm_blocks(config: ModelConfig) -> nn.Module:
    """The bare timm ViT blocks of ``config``'s size (same width, depth, heads, FFN) and the final norm, fp32:
    what every number is compared against. Randomly initialised (timing only)."""
    from functools import partial

    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import Block

    swiglu = config.ffn == "swiglu"
    kwargs = {"mlp_layer": partial(SwiGLUPacked, gate_last=False)} if swiglu else {}
    mlp_ratio = 2 * config.ffn_hidden / config.embed_dim if swiglu else config.mlp_ratio
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.Sequential(*[Block(config.embed_dim, config.num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                                 init_values=config.layer_scale_init, norm_layer=norm, **kwargs)
                           for _ in range(config.depth)], norm(config.embed_dim)).eval()


def network_flops(model: LoRAT) -> int:
    """Floating-point operations of one frame through ``model`` (2 per multiply-add of its matrix products,
    convolution and attention, as ``torch.utils.flop_counter`` counts them), from a batch-1 forward pass of a copy
    on the ``meta`` device: shapes only, no arithmetic, so L and g cost no fp32 forward on the CPU. Attention runs
    on the math kernel while counting: the counter does not see fused kernels."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():  # the copy shares no storage: every parameter and buffer is a meta tensor
        memo = {id(p): nn.Parameter(p.to("meta"), p.requires_grad) for p in model.parameters()}
        memo.update({id(b): b.to("meta") for b in model.buffers()})
        meta = copy.deepcopy(model, memo)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        meta(*meta.get_sample_data(1))
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device | str, dtype: torch.dtype, size: int | None = None, repeats: int = 5
                ) -> tuple[float, str]:
    """(TFLOPS, description) of a square ``size``-cubed ``torch.matmul`` at ``dtype`` on ``device``: the rate this
    device's matrix products reach when they have all the rows they want. A network already near it at batch 1
    cannot gain much from batching (docs/speed.md)."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    with torch.inference_mode():
        seconds = statistics.median(time_interleaved({"mm": lambda: a @ b}, repeats=repeats, device=device)["mm"])
    return 2 * size ** 3 / seconds / 1e12, f"{size}x{size}x{size} {str(dtype).replace('torch.', '')} torch.matmul"
