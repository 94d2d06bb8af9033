"""The bf16 default's attention at >= 320 tokens (`engine.onednn.grouped_attention` with ``shift_logits``): close to
fp32 attention, closer than bf16 logits without the shift where logits are large, and independent of the batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lorat_plugin.engine.onednn import grouped_attention

TOKENS, HEADS, DEPTH = 320, 12, 64  # B-224 at batch 1: 64 template + 256 search tokens, 12 heads of 64


def attention_inputs(batch: int, logit_scale: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """q, k, v in fp32; ``logit_scale`` sets how large q k^T / sqrt(d) gets (a trained ViT's reach tens)."""
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, TOKENS, DEPTH, generator=generator) for _ in range(3))
    return q * logit_scale, k, v


def fp32_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()


def error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return float((result.float() - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("logit_scale", [0.5, 4.0])
def test_shifted_bf16_attention_is_as_close_to_fp32_as_bf16_inputs_allow(logit_scale: float) -> None:
    q, k, v = attention_inputs(1, logit_scale)
    reference = fp32_attention(q, k, v)
    bf16 = [t.bfloat16() for t in (q, k, v)]
    shifted = grouped_attention(*bf16, logits_bytes=1 << 20, shift_logits=True)
    unshifted = grouped_attention(*bf16, logits_bytes=1 << 20, shift_logits=False)
    # the fp32 attention of the bf16-rounded inputs: what no bf16 attention can beat
    floor = error(fp32_attention(*(t.float() for t in bf16)), reference)
    assert shifted.dtype == torch.bfloat16 and shifted.shape == q.shape
    assert error(shifted, reference) < max(4 * floor, 2e-2)
    if logit_scale > 1:  # large logits: rounding them to bf16 unshifted costs accuracy the shift keeps
        assert error(shifted, reference) < error(unshifted, reference)


def test_each_frame_of_a_batch_gets_the_result_it_gets_alone() -> None:
    q, k, v = (t.bfloat16() for t in attention_inputs(3, 4.0, seed=1))
    together = grouped_attention(q, k, v, logits_bytes=1 << 20, shift_logits=True)
    for i in range(3):
        alone = grouped_attention(q[i:i + 1], k[i:i + 1], v[i:i + 1], logits_bytes=1 << 20, shift_logits=True)
        assert torch.equal(together[i:i + 1], alone)

