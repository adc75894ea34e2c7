"""``DetectConfig``: lesion detection with a RetinaNet over the medssl encoder, 2D or 3D."""

from __future__ import annotations

from dataclasses import dataclass

from medssl.config import CommonConfig, check

DETECT_AUGMENTATIONS = ("none", "flips")


@dataclass
class DetectConfig(CommonConfig):
    checkpoint: str = "scratch"  # a pre-training run dir (its encoder.pt becomes the backbone) or scratch
    backbone: str = "resnet10"  # used only from scratch; a checkpoint brings its own
    width: float = 0.5
    epochs: int = 20
    batch_size: int = 8
    label_fraction: float = 1.0  # nested, seeded fraction of the training images whose boxes are used
    min_samples_per_epoch: int = 64  # several passes over tiny training sets per epoch
    augment: str = "flips"  # none | flips (boxes flip with the image)
    fpn_channels: int = 32
    anchor_size: float = 4.0  # anchor side (pixels) on the finest pyramid level; coarser levels scale it by 2^k
    score_threshold: float = 0.02  # boxes below this score are dropped before NMS
    nms_threshold: float = 0.22  # as MONAI's LUNA16 detector
    detections_per_image: int = 100
    save_predictions: bool = True

    def validate(self) -> None:
        super().validate()
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(0.0 < self.label_fraction <= 1.0, f"label fraction must lie in (0, 1], got {self.label_fraction}")
        check(self.augment in DETECT_AUGMENTATIONS,
              f"detection augment must be one of {', '.join(DETECT_AUGMENTATIONS)}, got '{self.augment}'")
        check(self.min_samples_per_epoch >= 0, "min samples per epoch must be >= 0")
        check(self.fpn_channels >= 4, f"fpn channels must be >= 4, got {self.fpn_channels}")
        check(self.anchor_size > 0, f"anchor size must be > 0, got {self.anchor_size}")
        check(0.0 <= self.score_threshold < 1.0, f"score threshold must lie in [0, 1), got {self.score_threshold}")
        check(0.0 < self.nms_threshold <= 1.0, f"nms threshold must lie in (0, 1], got {self.nms_threshold}")
        check(self.detections_per_image >= 1, "detections per image must be >= 1")
        check(self.devices * self.num_nodes == 1, "detection runs on one device: use --devices 1 --num-nodes 1")
