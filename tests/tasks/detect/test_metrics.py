"""Detection metrics against hand-made boxes, with the numbers worked out by hand (COCO 101-point AP)."""

import math

import numpy as np
import pytest

from medssl.tasks.detect.metrics import FP_RATES, detection_metrics, mean_box_baseline

GT = [np.array([[0, 0, 10, 10]]), np.array([[5, 5, 15, 15], [20, 20, 24, 24]])]


def test_ap_and_froc_of_a_hand_made_case():
    # ranked by score: 0.95 FP, 0.9 TP, 0.8 FP, 0.7 TP; 3 ground-truth boxes over 2 images
    boxes = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[5, 5, 15, 15], [40, 40, 50, 50]])]
    scores = [np.array([0.9, 0.8]), np.array([0.7, 0.95])]
    m = detection_metrics(boxes, scores, GT)
    # interpolated precision is 0.5 up to recall 2/3, then 0: recall points 0.00..0.66 (67 of 101)
    assert m["map_iou10"] == pytest.approx(67 * 0.5 / 101)
    assert m["map_iou50"] == pytest.approx(67 * 0.5 / 101)
    # operating points (FP per image, sensitivity): (0.5, 0) (0.5, 1/3) (1, 1/3) (1, 2/3)
    expected = [0.0, 0.0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]
    assert [m[f"sensitivity_at_{r:g}_fp"] for r in FP_RATES] == pytest.approx(expected)
    assert m["froc_cpm"] == pytest.approx(np.mean(expected))
    assert (m["n_images"], m["n_boxes"]) == (2, 3)


def test_iou_thresholds_separate_a_loose_hit_from_a_tight_one():
    # IoU of [0,0,10,10] with [0,0,10,4] is 0.4: a hit at 0.1, a miss at 0.5
    m = detection_metrics([np.array([[0, 0, 10, 4]])], [np.array([0.9])], [np.array([[0, 0, 10, 10]])])
    assert m["map_iou10"] == pytest.approx(1.0) and m["map_iou50"] == 0.0


def test_perfect_and_empty_predictions_in_3d():
    gt = [np.array([[1, 1, 1, 5, 6, 7]], np.float32), np.zeros((0, 6), np.float32)]
    perfect = detection_metrics([gt[0], np.zeros((0, 6))], [np.array([0.8]), np.zeros(0)], gt)
    assert perfect["map_iou10"] == pytest.approx(1.0) and perfect["froc_cpm"] == pytest.approx(1.0)
    empty = detection_metrics([np.zeros((0, 6))] * 2, [np.zeros(0)] * 2, gt)
    assert empty["map_iou10"] == 0.0 and empty["froc_cpm"] == 0.0


def test_without_ground_truth_every_metric_is_undefined():
    m = detection_metrics([np.array([[0, 0, 2, 2]])], [np.array([0.5])], [np.zeros((0, 4))])
    assert math.isnan(m["map_iou10"]) and math.isnan(m["froc_cpm"])


def test_the_trivial_predictor_puts_the_mean_training_box_on_every_image():
    boxes, scores = mean_box_baseline([np.array([[0, 0, 4, 4]]), np.array([[2, 2, 10, 10]]), np.zeros((0, 4))], 3)
    assert len(boxes) == 3 and np.allclose(boxes[2], [[1, 1, 7, 7]]) and scores[0].tolist() == [1.0]
