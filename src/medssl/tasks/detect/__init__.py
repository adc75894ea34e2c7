"""Lesion detection, 2D and 3D: MONAI's RetinaNet over the medssl encoder's feature pyramid; AP at IoU 0.1 and
0.5 and FROC (LUNA16 false-positive rates) with MONAI's detection metrics; selects on val AP@IoU0.1."""

from medssl.tasks.base import Task
from medssl.tasks.detect.config import DetectConfig
from medssl.tasks.detect.names import METRIC_NAMES

TASK = Task(
    name="detect",
    description="lesion detection with boxes (mAP at IoU 0.1 / 0.5, FROC)",
    config=DetectConfig,
    run="medssl.tasks.detect.run:finetune_detection",
    primary_metric="map_iou10",
    primary_label="AP@IoU0.1",
    metric_names=METRIC_NAMES,
    options={
        "label_fraction": "fraction of the training images whose boxes are used (nested, seeded)",
        "augment": "none | flips (boxes flip with the image)",
        "fpn_channels": "feature pyramid channels",
        "anchor_size": "anchor side in pixels on the finest level; coarser levels double it",
        "score_threshold": "drop boxes scoring below this before NMS",
        "nms_threshold": "IoU above which NMS suppresses a box",
        "detections_per_image": "most boxes kept per image",
        "min_samples_per_epoch": "images drawn per epoch at least (repeats tiny training sets)",
    },
    summary_format="test AP@IoU0.1 {map_iou10:.4f}  AP@IoU0.5 {map_iou50:.4f}  FROC CPM {froc_cpm:.4f}",
)
