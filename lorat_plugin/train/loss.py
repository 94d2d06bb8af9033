"""LoRAT's training loss, as the paper and the reference define it: BCE with an IoU-aware soft target over every
cell, plus GIoU (torchvision's) on the positive cells, both summed and divided by the number of positive cells
averaged over all processes (>= 1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from ..distributed import all_reduce_mean

def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of aligned x1 y1 x2 y2 boxes (mmdet's ``bbox_overlaps(is_aligned=True)``)."""
    overlap = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    union = ((a[..., 2:] - a[..., :2]).prod(-1) + (b[..., 2:] - b[..., :2]).prod(-1) - overlap).clamp(min=eps)
    return overlap / union


def tracking_loss(score_map: torch.Tensor, boxes: torch.Tensor, positive: torch.Tensor, gt_boxes: torch.Tensor, *,
                  cls_weight: float = 1.0, box_weight: float = 1.0, iou_aware: bool = True,
                  num_positive: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``score_map`` B x h x w logits, ``boxes`` B x h x w x 4 predicted normalised xyxy, ``positive`` B x h x w
    bools, ``gt_boxes`` B x 4 normalised xyxy. Returns (total, {"cls", "box", "num_positive"} detached).

    ``num_positive`` defaults to the number of positive cells averaged over all processes, at least 1."""
    score_map, boxes, gt_boxes = score_map.float(), boxes.float(), gt_boxes.float()
    if num_positive is None:
        num_positive = all_reduce_mean(positive.sum().to(torch.float32)).clamp(min=1.0)
    batch_index, row, col = positive.nonzero(as_tuple=True)
    predicted = boxes[batch_index, row, col]
    target_boxes = gt_boxes[batch_index]

    with torch.no_grad():
        target = torch.zeros_like(score_map)
        target[batch_index, row, col] = box_iou(predicted.detach(), target_boxes) if iou_aware else 1.0
    cls_loss = F.binary_cross_entropy_with_logits(score_map, target, reduction="sum") / num_positive
    if len(batch_index):
        box_loss = generalized_box_iou_loss(predicted, target_boxes, reduction="sum") / num_positive
    else:  # keeps the graph connected (DDP) when a rank has nothing to regress
        box_loss = boxes.sum() * 0.0
    total = cls_weight * cls_loss + box_weight * box_loss
    return total, {"cls": cls_loss.detach(), "box": box_loss.detach(), "num_positive": num_positive.detach()}
