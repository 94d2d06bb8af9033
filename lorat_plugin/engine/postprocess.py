"""The reference's post-processing: sigmoid of the score logits blended with a non-periodic Hann window
(``0.55 * score + 0.45 * window``), argmax; the chosen cell's box in search-crop pixels and its *raw* sigmoid score
as the confidence. No scale or aspect penalties, no smoothing, no re-detection.
"""
from __future__ import annotations

import torch

WINDOW_PENALTY = 0.45


def hann_window(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Outer product of two non-periodic (symmetric) Hann windows, ``height x width``, float32."""
    return torch.outer(torch.hann_window(height, periodic=False),
                       torch.hann_window(width, periodic=False)).to(device)


def select_boxes(score_logits: torch.Tensor, boxes: torch.Tensor, window: torch.Tensor, search_size: int,
                 window_penalty: float = WINDOW_PENALTY) -> torch.Tensor:
    """Pick one cell per batch element of ``score_logits`` (B x h x w) and ``boxes`` (B x h x w x 4, normalised
    x1 y1 x2 y2 of the search crop), with ``window`` (h x w, :func:`hann_window`) on the same device. Returns
    B x 5 float32 on that device, x1 y1 x2 y2 in search-crop pixels and the confidence: one copy to the host."""
    b, h, w = score_logits.shape
    scores = score_logits.detach().float().sigmoid().view(b, h * w)
    ranked = scores * (1 - window_penalty) + window.view(1, h * w) * window_penalty if window_penalty > 0 else scores
    best = ranked.argmax(dim=1, keepdim=True)
    confidence = scores.gather(1, best)
    chosen = boxes.detach().float().view(b, h * w, 4).gather(1, best.unsqueeze(-1).expand(b, 1, 4)).squeeze(1)
    return torch.cat((chosen * float(search_size), confidence), dim=1)
