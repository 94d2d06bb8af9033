"""Int8 transformer blocks for CPU inference on oneDNN's quantised linear kernels (``--dtype int8``).

:class:`Int8Block` is :class:`~lorat_plugin.engine.onednn.OneDNNBlock` with int8 products: weights quantised once
per output channel (LayerScale folded in), inputs per call to uint8 over their own range (no calibration state);
attention (bf16 matmuls), the norms and the rest run at bf16 (fp32 without native bf16). Tolerances: docs/speed.md.
"""
from __future__ import annotations

import math
import warnings

import torch

from .onednn import OneDNNBlock, onednn_available


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


def pack_int8_weight(weight: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed int8 weight, fp32 scale per output channel, zero points) of an fp32 ``weight`` for oneDNN's int8 linear
    kernel, packed for inputs of ``rows`` rows."""
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    quantized = torch.round(weight / scales[:, None]).to(torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(quantized, [rows, weight.shape[1]])
    return packed, scales, torch.zeros_like(scales, dtype=torch.int64)


class Int8Block(OneDNNBlock):
    """A timm ``Block`` with int8 linear layers (see the module docstring); ``dtype`` is the precision of
    everything else (bf16 or fp32), attention included (:meth:`OneDNNBlock._attention`)."""
    shift_logits = False  # the int8 q and k's error outweighs that of the bf16 logits (docs/speed.md)
    grouped_from_tokens = 0  # grouped at every size, as measured for int8 (docs/speed.md)

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return *pack_int8_weight(weight, self._tokens), bias

    def _linear(self, x: torch.Tensor, packed: tuple[torch.Tensor, ...], gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        quantized = quantize_dynamic(x)
        if quantized is None:  # inf/nan pass on as nan, as in the fp32 blocks: the tracking engine reports them
            return torch.full((x.shape[0], packed[1].numel()), float("nan"), dtype=self._dtype, device=x.device)
        q, scale, zero = quantized
        if residual is not None:
            return torch.ops.onednn.qlinear_pointwise.binary(q, scale, zero, *packed[:3], residual, packed[3], 1.0, 0,
                                                             self._dtype, 1.0, 0, "add", 1.0, "none", [], "")
        return torch.ops.onednn.qlinear_pointwise(q, scale, zero, *packed, 1.0, 0, self._dtype,
                                                  "gelu" if gelu else "none", [], "none" if gelu else "")
