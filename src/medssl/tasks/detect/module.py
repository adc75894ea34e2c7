"""The detection LightningModule: RetinaNet losses on whole training images (boxes flip with the image), model
selection on validation AP at IoU 0.1 after every epoch."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.transforms.box_ops import flip_boxes
from torch import Tensor

from medssl.methods.base import to_unit_float
from medssl.tasks.detect.data import DetSplit
from medssl.tasks.detect.metrics import detection_metrics
from medssl.tasks.selection import KeepsBest, adamw_warmup_cosine

SELECTION_METRIC = "map_iou10"


@torch.no_grad()
def predict(detector: RetinaNetDetector, images: np.ndarray, batch_size: int = 16
            ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Boxes, scores and labels per image (eval mode, whole images)."""
    was_training = detector.training
    detector.eval()
    device = next(detector.network.parameters()).device
    boxes, scores, labels = [], [], []
    for start in range(0, len(images), batch_size):
        x = to_unit_float(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device))
        for out in detector(x):
            boxes.append(out["boxes"].float().cpu().numpy())
            scores.append(out["labels_scores"].float().cpu().numpy())
            labels.append(out["labels"].cpu().numpy())
    detector.train(was_training)
    return boxes, scores, labels


def evaluate(detector: RetinaNetDetector, split: DetSplit, num_classes: int) -> tuple[dict, list, list, list]:
    boxes, scores, labels = predict(detector, split.images)
    metrics = detection_metrics(boxes, scores, split.boxes, labels, split.labels, num_classes)
    return metrics, boxes, scores, labels


def random_box_flips(x: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Mirror each sample along each spatial axis with probability 1/2, its boxes with it."""
    spatial = tuple(x.shape[2:])
    out_x, out_targets = [], []
    for image, target in zip(x, targets, strict=True):
        axes = [a for a in range(len(spatial)) if torch.rand(()) < 0.5]
        if axes:
            image = image.flip([a + 1 for a in axes])
            target = {**target, "boxes": flip_boxes(target["boxes"], spatial, flip_axes=axes)}
        out_x.append(image)
        out_targets.append(target)
    return torch.stack(out_x), out_targets


class DetectionModule(KeepsBest, pl.LightningModule):
    """A batch is (images, indices into the training split); the boxes come from the split itself."""

    checkpoint_key = "detection"

    def __init__(self, detector: RetinaNetDetector, train: DetSplit, val: DetSplit, num_classes: int, *,
                 lr: float = 1e-3, weight_decay: float = 1e-4, augment: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.train_split, self.val_split = train, val
        self.num_classes = num_classes
        self.lr, self.weight_decay, self.augment = lr, weight_decay, augment
        self.init_selection(SELECTION_METRIC)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, indices = batch
        x = to_unit_float(images)
        targets = [{"boxes": torch.from_numpy(self.train_split.boxes[i]).to(x.device),
                    "labels": torch.from_numpy(self.train_split.labels[i]).to(x.device)} for i in indices.tolist()]
        if self.augment:
            x, targets = random_box_flips(x, targets)
        losses = self.detector(x, targets)
        loss = losses[self.detector.cls_key] + losses[self.detector.box_reg_key]
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        summary, *_ = evaluate(self.detector, self.val_split, self.num_classes)
        score = summary[SELECTION_METRIC]
        summary[SELECTION_METRIC] = score if np.isfinite(score) else -1.0  # val without boxes: keep the first
        self.log(f"val/{SELECTION_METRIC}", summary[SELECTION_METRIC], prog_bar=True)
        self.record(summary, self.detector.network)

    def configure_optimizers(self) -> dict:
        return adamw_warmup_cosine(self, self.lr, self.weight_decay)
