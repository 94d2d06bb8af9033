"""Metric definitions pinned by tiny hand-made cases whose numbers are worked out in the comments."""
from __future__ import annotations

import numpy as np
import pytest

from lorat_plugin.evaluation import metrics as M

BOX = [10.0, 10.0, 10.0, 10.0]


def test_rect_iou_and_got10k_image_bound_quirk():
    # (0,0,10,10) vs (5,0,10,10): intersection 5 x 10 = 50, union 100 + 100 - 50 = 150
    assert M.rect_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]])[0] == pytest.approx(1 / 3, abs=1e-12)
    # bound (W, H) = (100, 100): (90,0,20,10) becomes (90,0,10,10), identical to the other box
    assert M.rect_iou([[90, 0, 20, 10]], [[90, 0, 10, 10]], bound=(100, 100))[0] == pytest.approx(1.0)
    assert M.rect_iou([[90, 0, 20, 10]], [[90, 0, 10, 10]])[0] == pytest.approx(0.5)
    # got10k clips x to 0 but keeps the width: (-10,0,20,10) becomes (0,0,20,10), so 100 / 200 with (5,0,10,10)
    assert M.rect_iou([[-10, 0, 20, 10]], [[5, 0, 10, 10]], bound=(100, 100))[0] == pytest.approx(0.5)
    assert M.rect_iou([[-10, 0, 20, 10]], [[5, 0, 10, 10]])[0] == pytest.approx(50 / 250)


def test_geometry_matches_the_got10k_toolkit_functions():
    got10k_metrics = pytest.importorskip("got10k.utils.metrics")
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(-20, 80, (200, 2)), rng.uniform(0, 60, (200, 2))]
    b = np.c_[rng.uniform(-20, 80, (200, 2)), rng.uniform(0, 60, (200, 2))]
    np.testing.assert_array_equal(M.rect_iou(a, b), got10k_metrics.rect_iou(a.copy(), b.copy()))
    np.testing.assert_array_equal(M.rect_iou(a, b, bound=(64, 48)),
                                  got10k_metrics.rect_iou(a.copy(), b.copy(), bound=(64, 48)))
    np.testing.assert_array_equal(M.center_error(a, b), got10k_metrics.center_error(a, b))


def test_got10k_excludes_frame_zero_and_cover_zero_and_pools_frames():
    gt = np.array([BOX] * 5)
    pred = np.array([[50, 50, 1, 1],     # frame 0: never scored
                     [10, 10, 10, 10],   # IoU 1
                     [50, 50, 5, 5],     # cover 0: dropped
                     [15, 10, 10, 10],   # IoU 50 / 150 = 1/3
                     [10, 10, 10, 5]])   # IoU 50 / 100 = 0.5 exactly: not a success at 0.5 (strict >)
    cover = [8, 8, 0, 8, 8]
    times = np.array([0.5, 0.25, 0.0, 0.125, np.nan])  # speed: mean(1/t) over positive times = (2 + 4 + 8) / 3
    seq = M.got10k_sequence([pred], gt, cover, (100, 100), times)
    np.testing.assert_allclose(seq.ious, [1, 1 / 3, 0.5], atol=1e-12)
    result = M.got10k_benchmark({"a": seq})["overall"]
    assert result["ao"] == pytest.approx(11 / 18)
    assert result["sr50"] == pytest.approx(1 / 3) and result["sr75"] == pytest.approx(1 / 3)
    assert result["speed_fps"] == pytest.approx(14 / 3)
    curve = result["succ_curve"]
    assert len(curve) == 101 and curve[0] == 1.0 and curve[33] == 1.0  # 1/3 > 0.33
    assert curve[34] == pytest.approx(2 / 3) and curve[50] == pytest.approx(1 / 3) and curve[100] == 0.0
    # a second, perfect run is pooled with the first: (1 + 1/3 + 0.5 + 3) / 6
    two_runs = M.got10k_sequence([pred, gt.copy()], gt, cover, (100, 100))
    assert M.got10k_benchmark({"a": two_runs})["overall"]["ao"] == pytest.approx(29 / 36)
    # frame-pooled, not sequence-averaged: 1 of 6 frames right -> 1/6 (a sequence mean would say 0.25)
    gt_a, gt_b = np.array([BOX] * 3), np.array([BOX] * 5)
    a = M.got10k_sequence([np.array([BOX, BOX, [60, 60, 5, 5]])], gt_a, [8] * 3, (100, 100))
    b = M.got10k_sequence([np.array([BOX] + [[60, 60, 5, 5]] * 4)], gt_b, [8] * 5, (100, 100))
    assert M.got10k_benchmark({"a": a, "b": b})["overall"]["ao"] == pytest.approx(1 / 6)


def _lasot_case():
    gt = np.array([BOX] * 5)
    pred = np.array([[0, 0, 1, 1],       # frame 0 := GT
                     [10, 10, 10, 10],   # IoU 1, centre error 0
                     [10, 10, 10, 10],   # target invisible: a miss whatever the box
                     [15, 10, 10, 10],   # IoU 1/3, centre error 5 px, normalised 0.5
                     [10, 10, 0, 10]])   # zero width -> the previous box: IoU 1/3, 5 px, 0.5
    return pred, gt, np.array([True, True, False, True, True])


def test_ope_lasot_rule_invisible_frames_are_misses_over_all_frames():
    pred, gt, visible = _lasot_case()
    curves = M.ope_sequence(pred, gt, kind="lasot", target_visible=visible)
    # success: IoU > t for t <= 0.3 (7 thresholds): frames 0,1,3,4 -> 4/5; t in 0.35..0.95 (13): 2/5; t = 1: 0
    expected = [0.8] * 7 + [0.4] * 13 + [0.0]
    np.testing.assert_allclose(curves.success, expected, atol=1e-12)
    scores = curves.scores()
    assert scores["auc"] == pytest.approx((7 * 0.8 + 13 * 0.4) / 21)
    assert scores["precision"] == pytest.approx(0.8)       # centre error <= 20 px: frames 0,1,3,4
    assert curves.precision[4] == pytest.approx(0.4)       # <= 4 px: frames 0,1
    assert scores["norm_precision"] == pytest.approx(0.4)  # <= 0.20: frames 0,1
    assert curves.norm_precision[50] == pytest.approx(0.8)  # <= 0.50 includes 0.5 itself
    assert scores["sr50"] == pytest.approx(0.4) and scores["sr75"] == pytest.approx(0.4)
    assert scores["ao"] == pytest.approx((1 + 1 + 1 / 3 + 1 / 3) / 4)


def test_ope_generic_rule_drops_invalid_gt_frames_from_the_denominator():
    pred, gt, _ = _lasot_case()
    gt[2] = [0, 0, 0, 0]  # no annotation on frame 2
    curves = M.ope_sequence(pred, gt, kind="generic")
    assert curves.success[0] == pytest.approx(1.0)           # 4 of 4 valid frames overlap
    assert curves.precision[20] == pytest.approx(1.0)
    assert curves.norm_precision[20] == pytest.approx(0.75)  # pytracking: invalid frames get -1, a "hit", over 4


def test_ope_uav_rule_counts_frames_without_gt_as_precision_hits():
    pred, gt, _ = _lasot_case()
    gt[2] = np.nan  # UAV123 marks absent targets with NaN rows
    curves = M.ope_sequence(pred, gt, kind="uav")
    assert curves.success[0] == pytest.approx(4 / 5)     # denominator: all 5 frames
    assert curves.precision[0] == pytest.approx(3 / 5)   # frames 0, 1 at 0 px, and the NaN frame (-1 <= 0)


def test_ope_thresholds_are_strict_and_invalid_results_are_rejected():
    gt = np.array([BOX, BOX])
    half = M.ope_sequence(np.array([BOX, [10, 10, 10, 5]]), gt)  # IoU exactly 0.5
    assert half.success[9] == 1.0 and half.success[10] == 0.5
    with pytest.raises(ValueError, match="invalid results"):
        M.ope_sequence(np.array([BOX, [np.nan] * 4]), gt, name="x")
    with pytest.raises(ValueError, match="result boxes for"):
        M.ope_sequence(np.array([BOX]), gt, kind="lasot", target_visible=[True, True])
    short = M.ope_sequence(np.array([BOX]), gt)  # other benchmarks: a short result is zero-padded
    assert short.success[0] == 0.5


def test_trackingnet_rounds_half_to_even_and_integrates_with_the_trapezoid_rule():
    gt = np.array([[10, 10, 11, 11]] * 3, dtype=float)
    pred = np.array([[0, 0, 1, 1],          # frame 0 := GT
                     [12.5, 10, 11, 11],    # rounds to x = 12: IoU 9*11 / (242 - 99) = 0.692; 2 px; 2/11
                     [13.5, 10, 11, 11]])   # rounds to x = 14: IoU 7*11 / (242 - 77) = 0.467; 4 px; 4/11
    success, precision, norm_precision = M.trackingnet_sequence(pred, gt)
    np.testing.assert_allclose(success, [1] * 10 + [2 / 3] * 4 + [1 / 3] * 6 + [0], atol=1e-12)
    np.testing.assert_allclose(precision, [1 / 3, 2 / 3] + [1] * 19, atol=1e-12)
    np.testing.assert_allclose(norm_precision, [1 / 3] * 8 + [2 / 3] * 7 + [1] * 6, atol=1e-12)
    result = M.trackingnet_benchmark({"s": (success, precision, norm_precision)})
    assert result["success"] == pytest.approx((10 + 4 * 2 / 3 + 6 / 3 - 0.5) / 20)   # 0.7083, not the mean 0.698
    assert result["precision"] == pytest.approx((20 - (1 / 3 + 1) / 2) / 20)
    assert result["norm_precision"] == pytest.approx((8 / 3 + 14 / 3 + 6 - (1 / 3 + 1) / 2) / 20)
    missing, _, _ = M.trackingnet_sequence(None, gt)  # no file in the zip: zero boxes, only frame 0 counts
    assert missing[0] == pytest.approx(1 / 3)
    longer, _, _ = M.trackingnet_sequence(np.vstack([pred, pred]), gt)  # extra rows are ignored
    np.testing.assert_array_equal(longer, success)


def test_trapezoid_is_not_the_mean():
    f = np.linspace(1, 0, 21) ** 2
    assert M.trapezoid(f) == pytest.approx((f.sum() - (f[0] + f[-1]) / 2) / 20)
    assert M.trapezoid(f) != pytest.approx(f.mean())


def test_got10k_otb_family_includes_frame_zero_and_averages_sequences():
    gt = np.array([BOX] * 4)
    pred = np.array([[0, 0, 1, 1], BOX, [15, 10, 10, 10], [60, 60, 5, 5]])  # IoUs 1 (frame 0 := GT), 1, 1/3, 0
    success, precision = M.got10k_otb_sequence(pred, gt)
    assert success[0] == pytest.approx(3 / 4) and success[10] == pytest.approx(2 / 4)
    assert precision[20] == pytest.approx(3 / 4)  # centre errors 0, 0, 5 and ~55 px
    summary = M.got10k_otb_benchmark({"a": (success, precision), "b": (np.ones(21), np.ones(51))}, {"a": 10, "b": 0})
    assert summary["success_score"] == pytest.approx((np.mean(success) + 1) / 2)
    assert summary["speed_fps"] == 10  # sequences without times are left out of the speed
    gt[2] = np.nan  # UAV123: NaN GT rows are dropped from numerator and denominator
    success, _ = M.got10k_otb_sequence(pred, gt, drop_nan_gt=True)
    assert success[10] == pytest.approx(2 / 3)


def test_lasot_toolkit_rules_differ_from_pytracking_where_documented():
    pred, gt, visible = _lasot_case()
    success, precision, norm_precision = M.lasot_toolkit_sequence(pred, gt, ~visible)
    np.testing.assert_allclose(success, [0.8] * 7 + [0.4] * 13 + [0.0], atol=1e-12)  # as pytracking here
    assert precision[20] == pytest.approx(0.8) and norm_precision[20] == pytest.approx(0.4)
    # a GT box touching x = 0 is invalid for the MATLAB toolkit (every entry must be > 0): overlap -1 (a miss)
    # but centre error -1 (a hit at every threshold); pytracking only asks w, h > 0
    gt[1] = pred[1] = [0, 10, 10, 10]
    success, precision, _ = M.lasot_toolkit_sequence(pred, gt, ~visible)
    assert success[0] == pytest.approx(3 / 5) and precision[0] == pytest.approx(2 / 5)
    assert M.ope_sequence(pred, gt, kind="lasot", target_visible=visible).success[0] == pytest.approx(4 / 5)
    # a sequence whose curve is all zero is left out of the average
    zero = (np.zeros(21), np.zeros(51), np.zeros(51))
    alone = M.lasot_toolkit_benchmark({"a": (success, precision, precision)})
    with_failure = M.lasot_toolkit_benchmark({"a": (success, precision, precision), "lost": zero})
    assert with_failure["auc"] == alone["auc"] and with_failure["success_sequences"] == 1
