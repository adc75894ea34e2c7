"""Detection metrics with MONAI's: COCO-style AP at IoU 0.1 and 0.5 (and their mean over 0.1:0.05:0.5) from
``monai.apps.detection.metrics``, and FROC sensitivities at 1/8 ... 8 false positives per image (the LUNA16
rates) from ``monai.metrics.froc`` over the same IoU-0.1 matches.

A detection counts as a hit when it matches a ground-truth box at IoU >= 0.1 (greedy, by score, as COCO);
a second detection of an already matched box is a false positive (LUNA16 would ignore it)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou
from monai.metrics.froc import compute_froc_curve_data

from medssl.tasks.detect.names import FP_RATES, METRIC_NAMES

MAX_DETECTIONS = 100


def _froc(matches: list[dict], iou_index: int, num_targets: int, num_images: int) -> dict[str, float]:
    tp, fp = [], []
    for image in matches:
        for result in image.values():
            hit = result["dtMatches"][iou_index].astype(bool)
            counted = ~result["dtIgnore"][iou_index].astype(bool)
            tp.append(result["dtScores"][hit & counted])
            fp.append(result["dtScores"][~hit & counted])
    tp_scores = np.concatenate(tp) if tp else np.zeros(0)
    # MONAI's curve starts at the second-lowest score (as CAMELYON's code): a sentinel below every score
    # makes its first threshold the lowest real score, so the operating point with all detections is kept
    fp_scores = np.concatenate([*fp, [-np.inf]])
    fps, sensitivity = compute_froc_curve_data(fp_scores, tp_scores.astype(fp_scores.dtype), num_targets,
                                               num_images)
    curve = np.interp(FP_RATES, fps[::-1], sensitivity[::-1])
    out = {f"sensitivity_at_{r:g}_fp": float(s) for r, s in zip(FP_RATES, curve, strict=True)}
    out["froc_cpm"] = float(np.mean(curve))  # LUNA16's competition performance metric
    return out


def detection_metrics(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray] | None = None,
                      gt_labels: Sequence[np.ndarray] | None = None, num_classes: int = 1) -> dict[str, float]:
    """Metrics over images: boxes (k, 2 * dims) in StandardMode, scores (k,); labels default to class 0.
    Without any ground-truth box every metric is NaN (nothing to find)."""
    pred_labels = pred_labels if pred_labels is not None else [np.zeros(len(b), np.int64) for b in pred_boxes]
    gt_labels = gt_labels if gt_labels is not None else [np.zeros(len(b), np.int64) for b in gt_boxes]
    num_targets = int(sum(len(b) for b in gt_boxes))
    if num_targets == 0:
        return dict.fromkeys(METRIC_NAMES, math.nan) | {"n_images": len(gt_boxes), "n_boxes": 0}
    coco = COCOMetric(classes=[f"class{c}" for c in range(num_classes)], iou_list=(0.1, 0.5),
                      iou_range=(0.1, 0.5, 0.05), max_detection=(MAX_DETECTIONS,), per_class=False, verbose=False)
    matches = matching_batch(box_iou, coco.iou_thresholds, [np.asarray(b, np.float32) for b in pred_boxes],
                             [np.asarray(c) for c in pred_labels], [np.asarray(s, np.float32) for s in pred_scores],
                             [np.asarray(b, np.float32) for b in gt_boxes], [np.asarray(c) for c in gt_labels],
                             max_detections=MAX_DETECTIONS)
    logger = logging.getLogger("monai.apps.detection.metrics.coco")
    level, logger.level = logger.level, logging.ERROR  # "no results found" for an empty class is not news
    try:
        values, _ = coco(matches)
    finally:
        logger.setLevel(level)
    out = {"map_iou10": float(values[f"AP_IoU_0.10_MaxDet_{MAX_DETECTIONS}"]),
           "map_iou50": float(values[f"AP_IoU_0.50_MaxDet_{MAX_DETECTIONS}"]),
           "map_iou10_50": float(values[f"mAP_IoU_0.10_0.50_0.05_MaxDet_{MAX_DETECTIONS}"])}
    iou_index = int(np.flatnonzero(np.isclose(coco.iou_thresholds, 0.1))[0])
    out |= _froc(matches, iou_index, num_targets, len(gt_boxes))
    return out | {"n_images": len(gt_boxes), "n_boxes": num_targets}


def mean_box_baseline(train_boxes: Sequence[np.ndarray], n_images: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The trivial predictor: on every image, one box of the training boxes' mean corners, score 1."""
    stacked = [b for b in train_boxes if len(b)]
    mean = np.concatenate(stacked).mean(0, keepdims=True).astype(np.float32) if stacked else None
    boxes = [mean if mean is not None else np.zeros((0, 4), np.float32) for _ in range(n_images)]
    return boxes, [np.ones(len(b), np.float32) for b in boxes]
