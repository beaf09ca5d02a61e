"""Matching and AP: hand-checked cases; AP is pycocotools' own."""

from __future__ import annotations

import numpy as np
import pytest

from anonlab.metrics.detection import APAccumulator
from anonlab.metrics.matching import box_iou_np, disappearance, match_image

GT = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [50, 50, 50, 50]], dtype=np.float32)
    assert np.allclose(box_iou_np(a, b), [[50 / 150, 1.0, 0.0]])


def test_greedy_match_counts():
    dets = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 29, 30], [100, 100, 110, 110]], dtype=np.float32)
    m = match_image(dets, np.array([0.9, 0.95, 0.5, 0.4]), GT, iou=0.5)
    # det 1 (0.95) takes GT 0 first, det 0 is then a duplicate -> FP; det 2 matches GT 1; det 3 is FP
    assert (m.tp, m.fp, m.fn, m.n_gt) == (2, 2, 0, 2)
    assert m.gt_found.tolist() == [True, True]


def test_iou_threshold_is_inclusive_and_configurable():
    det = np.array([[5, 0, 15, 10]], dtype=np.float32)  # IoU 1/3 with GT 0
    assert match_image(det, np.array([1.0]), GT, iou=0.5).tp == 0
    assert match_image(det, np.array([1.0]), GT, iou=1 / 3).tp == 1


def test_ignored_ground_truth_is_neither_tp_fp_nor_fn():
    dets = np.array([[0, 0, 10, 10]], dtype=np.float32)
    m = match_image(dets, np.array([0.9]), GT, gt_ignore=np.array([True, False]))
    assert (m.tp, m.fp, m.fn, m.n_gt) == (0, 0, 1, 1)


def test_no_detections_and_no_ground_truth():
    m = match_image(np.zeros((0, 4)), np.zeros(0), GT)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2)
    m = match_image(np.array([[0, 0, 1, 1]], dtype=np.float32), np.array([0.3]), np.zeros((0, 4)))
    assert (m.tp, m.fp, m.fn, m.n_gt) == (0, 1, 0, 0)


def test_disappearance():
    assert disappearance(np.array([True, True, False]), np.array([True, False, False])) == 0.5
    assert disappearance(np.array([False, False]), np.array([False, False])) is None


def test_ap_known_case_is_coco_101_point():
    """Scores 0.9 TP, 0.8 FP, 0.7 TP over 2 GT: precision 1 up to recall .5, 2/3 up to 1 -> (51 + 50 * 2/3) / 101."""
    acc = APAccumulator(iou=0.5)
    dets = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], dtype=np.float32)
    acc.add(GT, np.array([False, False]), dets, np.array([0.9, 0.8, 0.7]))
    assert acc.ap() == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-9)


def test_ap_over_images_and_edge_cases():
    acc = APAccumulator()
    acc.add(GT, np.array([False, False]), GT, np.array([0.9, 0.8]))
    acc.add(GT[:1], np.array([False]), np.zeros((0, 4)), np.zeros(0))
    # 3 GT, 2 found with precision 1 -> AP = 67 recall points of 101 (recall 2/3)
    assert acc.ap() == pytest.approx(67 / 101, abs=1e-9)
    assert APAccumulator().ap() is None
    empty = APAccumulator()
    empty.add(GT, np.array([False, False]), np.zeros((0, 4)), np.zeros(0))
    assert empty.ap() == 0.0
