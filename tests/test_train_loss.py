"""The training loss on hand-made cases: BCE with the IoU-aware target, GIoU, the positive count."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lorat_plugin.train.loss import box_iou, tracking_loss


def test_iou_and_giou_values() -> None:
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]])
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.5]]).expand(3, 4)
    torch.testing.assert_close(box_iou(a, gt), torch.tensor([0.5, 0.0, 1.0]))
    # The box term on one positive each: (2) is disjoint, union 0.75, enclosing box 1 -> GIoU = 0 - 0.25 / 1.
    for i, giou in enumerate((0.5, -0.25, 1.0)):
        positive = torch.zeros(1, 1, 1, dtype=torch.bool).fill_(True)
        _, parts = tracking_loss(torch.zeros(1, 1, 1), a[i].view(1, 1, 1, 4), positive, gt[:1])
        assert parts["box"].item() == pytest.approx(1 - giou, abs=1e-6)


def _two_positive_case(logit: float):
    score = torch.full((1, 2, 2), logit, requires_grad=True)
    boxes = torch.zeros(1, 2, 2, 4)
    boxes[0, 0, 0] = torch.tensor([0.0, 0.0, 0.5, 0.5])  # IoU 0.5 with GT, GIoU 0.5
    boxes[0, 1, 1] = torch.tensor([0.5, 0.5, 1.0, 1.0])  # IoU 0, GIoU -0.25
    boxes.requires_grad_(True)
    positive = torch.zeros(1, 2, 2, dtype=torch.bool)
    positive[0, 0, 0] = positive[0, 1, 1] = True
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.5]])
    return score, boxes, positive, gt


def test_loss_matches_hand_computation() -> None:
    logit = 0.7
    score, boxes, positive, gt = _two_positive_case(logit)
    total, parts = tracking_loss(score, boxes, positive, gt)
    softplus = math.log1p(math.exp(logit))
    # BCE(l, t) = softplus(l) - t*l; targets: 0.5 (IoU) at one positive, 0 elsewhere; divided by 2 positives.
    assert parts["cls"].item() == pytest.approx((4 * softplus - 0.5 * logit) / 2, rel=1e-6)
    assert parts["box"].item() == pytest.approx(((1 - 0.5) + (1 + 0.25)) / 2, rel=1e-6)
    assert total.item() == pytest.approx(parts["cls"].item() + parts["box"].item(), rel=1e-6)
    total.backward()
    # The IoU target carries no gradient into the boxes through the classification term: only GIoU moves them.
    assert boxes.grad[0, 0, 1].abs().sum() == 0 and boxes.grad[0, 0, 0].abs().sum() > 0
    # Hard targets (the ablation) and weights; a num_positive given from outside (the all-reduced mean).
    _, hard = tracking_loss(*_two_positive_case(logit), iou_aware=False)
    assert hard["cls"].item() == pytest.approx((4 * softplus - 2 * logit) / 2, rel=1e-6)
    weighted, _ = tracking_loss(*_two_positive_case(logit), cls_weight=2.0, box_weight=0.5,
                                num_positive=torch.tensor(4.0))
    assert weighted.item() == pytest.approx(2 * (4 * softplus - 0.5 * logit) / 4 + 0.5 * 1.75 / 4, rel=1e-6)
    # Clamped at one positive: an empty batch is not divided by zero.
    score, boxes, positive, gt = _two_positive_case(logit)
    empty, parts = tracking_loss(score, boxes, torch.zeros_like(positive), gt)
    assert parts["num_positive"].item() == 1.0 and empty.item() == pytest.approx(4 * softplus, rel=1e-6)


def test_bce_definition_matches_torch() -> None:  # guards the hand computation above
    assert F.binary_cross_entropy_with_logits(torch.tensor(0.7), torch.tensor(0.5)).item() == pytest.approx(
        math.log1p(math.exp(0.7)) - 0.35)
