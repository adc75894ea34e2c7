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
    metric_names=("dice", "iou", "sensitivity", "specificity", "hd95"),
    summary_format="test Dice {dice:.4f}  IoU {iou:.4f}  sensitivity {sensitivity:.4f}  specificity "
                   "{specificity:.4f}  HD95 {hd95:.2f}",
)
