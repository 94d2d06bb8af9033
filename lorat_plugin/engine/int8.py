"""Int8 transformer blocks for CPU inference on oneDNN's quantised linear kernels (``--dtype int8``).

:class:`Int8Block` is :class:`~lorat_plugin.engine.onednn.OneDNNBlock` with int8 products: weights quantised once
per output channel (LayerScale folded in), inputs per call to uint8 over their own range (no calibration state);
attention, the norms and the rest of the network run at bf16 (fp32 without native bf16). Tolerances: docs/speed.md.
"""
from __future__ import annotations

import warnings

import torch

from .onednn import OneDNNBlock, onednn_available


# torch 2.14 deprecates creating quantised tensors; this one lives for one call and never leaves this module, and
# quantize_per_tensor_dynamic is the one fused min/max-and-round op (tests/test_int8.py fails if it goes away).
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning, module=__name__)


def int8_available() -> bool:
    """True when this torch build has oneDNN's quantised linear kernels (x86 CPU builds do)."""
    return onednn_available() and hasattr(getattr(torch.ops, "onednn", None), "qlinear_pointwise")


def quantize_dynamic(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """(uint8 values, scale, zero point) of ``x`` over its own range, zero included (so zero stays exact)."""
    quantized = torch.quantize_per_tensor_dynamic(x.float(), torch.quint8, False)
    return quantized.int_repr(), quantized.q_scale(), quantized.q_zero_point()


class Int8Block(OneDNNBlock):
    """A timm ``Block`` with int8 linear layers (see the module docstring); ``dtype`` is the precision of
    everything else (bf16 or fp32)."""

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        quantized = torch.round(weight / scales[:, None]).to(torch.int8)
        packed = torch.ops.onednn.qlinear_prepack(quantized, [self._tokens, weight.shape[1]])
        return packed, scales, torch.zeros_like(scales, dtype=torch.int64), bias

    def _linear(self, x: torch.Tensor, packed: tuple[torch.Tensor, ...], gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        q, scale, zero = quantize_dynamic(x)
        if residual is not None:
            return torch.ops.onednn.qlinear_pointwise.binary(q, scale, zero, *packed[:3], residual, packed[3], 1.0, 0,
                                                             self._dtype, 1.0, 0, "add", 1.0, "none", [], "")
        return torch.ops.onednn.qlinear_pointwise(q, scale, zero, *packed, 1.0, 0, self._dtype,
                                                  "gelu" if gelu else "none", [], "none" if gelu else "")
