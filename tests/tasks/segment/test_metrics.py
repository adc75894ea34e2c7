"""Segmentation metrics on hand-made masks, with hand-computed values."""

import math

import numpy as np
import pytest

from medssl.tasks.segment.metrics import image_metrics, summarise


def masks(*rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])[None]


EMPTY = masks("....", "....", "....", "....")
FULL = masks("####", "####", "####", "####")
TRUTH = masks("##..", "##..", "....", "....")  # 4 pixels
PRED = masks("####", "....", "....", "....")  # 4 pixels, 2 of them correct


def test_empty_prediction_of_empty_truth_is_perfect():
    m = image_metrics(EMPTY, EMPTY)
    assert m["dice"] == 1.0 and m["iou"] == 1.0 and m["specificity"] == 1.0
    assert math.isnan(m["sensitivity"]) and math.isnan(m["hd95"])


def test_full_prediction_of_full_truth_is_perfect():
    m = image_metrics(FULL, FULL)
    assert m["dice"] == 1.0 and m["iou"] == 1.0 and m["sensitivity"] == 1.0 and m["hd95"] == 0.0


def test_empty_prediction_of_a_nonempty_truth_scores_zero():
    m = image_metrics(EMPTY, TRUTH)
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["sensitivity"] == 0.0 and m["specificity"] == 1.0


def test_partial_overlap_matches_hand_computed_values():
    # TP 2, FP 2, FN 2, TN 10
    m = image_metrics(PRED, TRUTH)
    assert m["dice"] == pytest.approx(2 * 2 / (4 + 4))
    assert m["iou"] == pytest.approx(2 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(10 / 12)
    # distances of predicted pixels to the truth: 0, 0, 1, 2 (truth to prediction: 0, 0, 1, 1)
    assert m["hd95"] == pytest.approx(np.percentile([0, 0, 1, 2], 95))


def test_metrics_inside_the_field_of_view_ignore_everything_outside():
    fov = masks("####", "####", "....", "....")
    pred = PRED | masks("....", "....", "####", "####")  # false positives outside the FOV do not count
    m = image_metrics(pred, TRUTH, fov)
    # inside: TP 2, FP 2, FN 2, TN 2
    assert m["dice"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(2 / 4)
    assert image_metrics(pred, TRUTH)["dice"] == pytest.approx(4 / 16)


def test_3d_masks_work_the_same_way():
    truth = np.zeros((1, 4, 4, 4), bool)
    truth[0, :2] = True
    pred = np.zeros_like(truth)
    pred[0, 1:3] = True
    assert image_metrics(pred, truth)["dice"] == pytest.approx(0.5)


def test_summary_is_the_mean_over_images_and_counts_undefined_values():
    summary = summarise([image_metrics(PRED, TRUTH), image_metrics(EMPTY, EMPTY)])
    assert summary["dice"] == pytest.approx(0.75)
    assert summary["hd95_undefined"] == 1 and summary["sensitivity"] == pytest.approx(0.5)


def test_hd95_is_in_millimetres_when_the_spacing_is_known():
    truth = np.zeros((1, 20, 20), bool)
    truth[0, 5:10, 5:10] = True
    pred = np.zeros_like(truth)
    pred[0, 5:10, 8:13] = True  # shifted 3 pixels along the second axis
    in_pixels = image_metrics(pred, truth)["hd95"]
    assert in_pixels == pytest.approx(3.0)
    assert image_metrics(pred, truth, spacing=(0.5, 2.0))["hd95"] == pytest.approx(6.0)  # 3 px x 2 mm
    assert image_metrics(pred, truth, spacing=(2.0, 0.5))["hd95"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="one value per spatial axis"):
        image_metrics(pred, truth, spacing=(1.0,))


def test_spacing_at_the_scoring_resolution_scales_with_the_resampling():
    from medssl.tasks.segment.metrics import evaluation_spacing

    assert evaluation_spacing(None, (32, 32), (64, 64)) is None
    assert evaluation_spacing((2.0, 1.0), (32, 32), (32, 32)) == (2.0, 1.0)
    assert evaluation_spacing((2.0, 1.0), (32, 32), (64, 128)) == (1.0, 0.25)  # native masks: finer voxels
