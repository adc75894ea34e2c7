"""Binary segmentation metrics per image (MONAI), restricted to a field of view when one is given.

Inside the FOV only: prediction and truth are zeroed outside it, which leaves Dice, IoU, sensitivity and
HD95 exactly as if computed on FOV pixels alone; specificity also drops the true negatives outside it.
An empty prediction of an empty truth scores Dice = IoU = 1 (nothing to find, nothing wrongly found).
HD95 is in millimetres when the pixel / voxel ``spacing`` (mm per axis) is given, else in pixels / voxels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, get_confusion_matrix

METRICS = ("dice", "iou", "sensitivity", "specificity", "hd95")


def _as_batch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(1, *spatial) bool -> (1, 1, *spatial) float."""
    t = torch.as_tensor(np.asarray(x)).bool()
    return t[None].float()


def image_metrics(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
                  fov: np.ndarray | torch.Tensor | None = None,
                  spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Metrics of one binary prediction (1, *spatial) against the truth, inside ``fov`` if given; HD95 in mm
    with ``spacing`` (one value per spatial axis)."""
    p, y = _as_batch(pred), _as_batch(truth)
    if p.shape != y.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(y.shape)} differ in shape")
    outside = 0
    if fov is not None:
        region = _as_batch(fov)
        p, y = p * region, y * region
        outside = int(region.numel() - region.sum())
    dice = float(DiceMetric(include_background=True, ignore_empty=False)(p, y).item())
    iou = float(MeanIoU(include_background=True, ignore_empty=False)(p, y).item())
    tp, fp, tn, fn = (float(v) for v in get_confusion_matrix(p, y, include_background=True)[0, 0])
    tn -= outside
    if spacing is not None and len(spacing) != p.ndim - 2:
        raise ValueError(f"spacing {tuple(spacing)} must give one value per spatial axis ({p.ndim - 2})")
    if y.any() and p.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = float(HausdorffDistanceMetric(include_background=True, percentile=95)(
                p, y, spacing=None if spacing is None else [float(v) for v in spacing]).item())
    else:
        hd95 = math.nan  # undefined without both surfaces
    return {
        "dice": dice,
        "iou": iou,
        "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else math.nan,
        "hd95": hd95,
    }


def evaluation_spacing(spacing: Sequence[float] | None, working_shape: Sequence[int],
                       eval_shape: Sequence[int]) -> tuple[float, ...] | None:
    """The voxel size (mm) at the resolution masks are scored at, from the one at the working resolution."""
    if spacing is None:
        return None
    return tuple(float(s) * w / e for s, w, e in zip(spacing, working_shape, eval_shape, strict=True))


def summarise(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (NaNs, e.g. HD95 of an empty prediction, left out and counted)."""
    out: dict[str, float] = {}
    for key in METRICS:
        values = np.array([m[key] for m in per_image], dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[key] = float(finite.mean()) if finite.size else math.nan
        if finite.size < values.size:
            out[f"{key}_undefined"] = int(values.size - finite.size)
    return out
