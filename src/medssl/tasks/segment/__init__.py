"""Binary segmentation, 2D or 3D: encoder + pyramid decoder on patches, sliding-window inference; selects on
val Dice."""

from medssl.config import SegmentConfig
from medssl.tasks.base import Task

TASK = Task(
    name="segment",
    description="binary segmentation of masks (Dice, IoU, HD95)",
    config=SegmentConfig,
    run="medssl.tasks.segment.run:finetune_segmentation",
    primary_metric="dice",
    primary_label="Dice",
    metric_names=("dice", "iou", "sensitivity", "specificity", "hd95"),
    options={
        "transfer": "encoder | decoder | both | none: what to take from --checkpoint (default: both if it saved a "
                    "decoder, else encoder)",
        "label_count": "number of labelled training images (overrides --label-fraction)",
        "patch_size": "training patch / inference window size per axis",
        "steps_per_epoch": "patch batches per epoch",
        "mask_suffix": "mask file name = image name + SUFFIX (CHASE_DB1: _1stHO)",
        "fov": "field of view: none | threshold | a file suffix of FOV masks",
        "channel": "all | grey | green: image channels to use",
        "val_count": "images held out of the training pool for model selection",
        "test_count": "last N images (by name) form the test set (default 30 %)",
        "threshold": "probability threshold (default: the best on the val images)",
    },
    summary_format="test Dice {dice:.4f}  IoU {iou:.4f}  sensitivity {sensitivity:.4f}  specificity "
                   "{specificity:.4f}  HD95 {hd95:.2f}",
)
