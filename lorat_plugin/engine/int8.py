"""Int8 transformer blocks for CPU inference on oneDNN's quantised linear kernels (``--dtype int8``).

:class:`Int8Block` is :class:`~lorat_plugin.engine.onednn.OneDNNBlock` with int8 products: weights quantised once
per output channel (LayerScale folded in), inputs per call to uint8 over their own range (no calibration state);
attention (bf16 matmuls), the norms and the rest run at bf16 (fp32 without native bf16). Tolerances: docs/speed.md.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from .onednn import OneDNNBlock, onednn_available
from .precision import onednn_runs_avx512

# torch 2.14 deprecates creating quantised tensors; this one lives for one call and never leaves this module, and
# quantize_per_tensor is the one vectorised scale-round-clamp op (tests/test_int8.py fails if it goes away).
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning, module=__name__)


def int8_available() -> bool:
    """True when this torch build has oneDNN's quantised linear kernels (x86 CPU builds do)."""
    return onednn_available() and hasattr(getattr(torch.ops, "onednn", None), "qlinear_pointwise")


def quantize_dynamic(x: torch.Tensor) -> tuple[torch.Tensor, float, int] | None:
    """(uint8 values, scale, zero point) of ``x`` over its own range, zero included (so zero stays exact);
    ``None`` when ``x`` holds inf or nan, which 8 bits cannot carry."""
    low, high = (float(v) for v in torch.aminmax(x))  # one pass over x, in its own dtype
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 or 1.0  # an all-zero input: any scale is exact
    if not math.isfinite(scale):
        return None
    zero = min(255, max(0, round(-low / scale)))
    quantized = torch.quantize_per_tensor(x.float(), scale, zero, torch.quint8)
    # the quantised tensor's bytes as a plain uint8 tensor: int_repr() would copy them in a scalar loop
    values = torch.empty(0, dtype=torch.uint8, device=x.device)
    return values.set_(quantized.untyped_storage(), 0, quantized.shape, quantized.stride()), scale, zero


@dataclass(frozen=True, eq=False)  # tensors: no field-wise ==
class Int8Linear:
    """An fp32 linear layer packed for oneDNN's int8 kernel (:func:`pack_int8_linear`)."""

    packed: torch.Tensor       # the int8 weight in oneDNN's layout (opaque)
    scales: torch.Tensor       # fp32, one per output channel: weight ~= scales[:, None] * int8 weight
    zero_points: torch.Tensor  # int64 zeros: the weights are symmetric
    bias: torch.Tensor         # fp32
    column_sums: torch.Tensor  # fp32, scales * the int8 weight's sum over inputs: see int8_linear

    @property
    def out_features(self) -> int:
        return self.scales.numel()


def pack_int8_linear(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Int8Linear:
    """An fp32 ``weight`` (out x in) and ``bias`` quantised per output channel and packed for inputs of ``rows``
    rows (a hint for oneDNN's layout: any row count runs)."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    quantized = torch.round(weight / scales[:, None]).to(torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(quantized, [rows, weight.shape[1]])
    bias = torch.zeros_like(scales) if bias is None else bias.detach().float()
    column_sums = scales * quantized.sum(dim=1, dtype=torch.int64).float()
    return Int8Linear(packed, scales, torch.zeros_like(scales, dtype=torch.int64), bias, column_sums)


def int8_linear(x: torch.Tensor, layer: Int8Linear, dtype: torch.dtype, gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W^T + b`` of a 2-D ``x`` with ``x`` quantised on the call, written at ``dtype``; exact GELU applied, or
    ``residual`` (``dtype``) added, as the kernel writes. inf or nan in ``x`` gives nan rows, as fp32 would."""
    quantized = quantize_dynamic(x)
    if quantized is None:
        return torch.full((x.shape[0], layer.out_features), float("nan"), dtype=dtype, device=x.device)
    values, scale, zero = quantized
    # With a non-zero activation zero point the kernel sums the weight's columns on every call (what that costs:
    # docs/speed.md, "CPU int8"); that sum is constant, so its share goes into the bias instead:
    # scale * (values - zero) @ W^T == scale * values @ W^T - scale * zero * column_sums.
    bias = layer.bias - (scale * zero) * layer.column_sums if zero else layer.bias
    weight = (layer.packed, layer.scales, layer.zero_points)
    if residual is not None:
        return torch.ops.onednn.qlinear_pointwise.binary(values, scale, 0, *weight, residual, bias, 1.0, 0, dtype,
                                                         1.0, 0, "add", 1.0, "none", [], "")
    return torch.ops.onednn.qlinear_pointwise(values, scale, 0, *weight, bias, 1.0, 0, dtype,
                                              "gelu" if gelu else "none", [], "none" if gelu else "")


class Int8Block(OneDNNBlock):
    """A timm ``Block`` with int8 linear layers (see the module docstring); ``dtype`` is the precision of
    everything else (bf16 or fp32), attention included (:meth:`OneDNNBlock._attention`)."""
    shift_logits = False  # the int8 q and k's error outweighs that of the bf16 logits (docs/speed.md)
    grouped_from_tokens = 0  # grouped at every size, as measured for int8 (docs/speed.md)

    def __init__(self, block: Block, tokens: int, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(block, tokens, dtype)
        # fc1's GELU as the kernel writes, except where oneDNN runs AVX2 code: there ATen's GELU after the product
        # is faster (docs/speed.md, "CPU int8")
        self.gelu_in_kernel = onednn_runs_avx512()

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> Int8Linear:
        return pack_int8_linear(weight, bias, self._tokens)

    def _linear(self, x: torch.Tensor, packed: Int8Linear, gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        if gelu and not self.gelu_in_kernel:
            return F.gelu(int8_linear(x, packed, self._dtype))
        return int8_linear(x, packed, self._dtype, gelu, residual)
