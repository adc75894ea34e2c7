"""The shared pre-training machinery: one LightningModule driving one or more pretext tasks.

A pretext task (one file per method) owns only its heads, its views and its loss. ``Pretrainer`` owns
the encoder, the optimizer and schedule, the loss weighting of multi-task runs, logging and an online
linear probe trained on detached features (it never changes the encoder; it only shows progress).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.data.dataset import UNLABELED
from medssl.models.encoder import Encoder


@dataclass
class TaskOutput:
    loss: Tensor
    features: Tensor  # pooled encoder features (B, feature_dim) of the un-mixed batch, for the probe
    logs: dict[str, Tensor] = field(default_factory=dict)


class PretextTask(nn.Module):
    """Base class of every method. Subclasses set the class attributes and implement ``forward``."""

    name: ClassVar[str]
    family: ClassVar[str]  # predictive | contrastive | generative
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    # a method whose constructor takes ``**view_args`` passes them to this view recipe; its arguments then
    # count as the method's hyperparameters (see methods.registry.method_parameters)
    view_recipe: ClassVar[Callable[..., nn.Module] | None] = None

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.feature_dim = encoder.feature_dim
        self.decoder: nn.Module | None = None  # generative tasks set one; saved for segmentation transfer

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        raise NotImplementedError

    def on_step_end(self, encoder: Encoder, progress: float) -> None:
        """Hook after each optimizer step (momentum encoders update here); ``progress`` in [0, 1]."""

    @classmethod
    def recommended_lr(cls, batch_size: int) -> float | None:
        """The method's own learning rate for AdamW at this global batch, where its paper prescribes one
        that the general default (``DEFAULT_PRETRAIN_LR``) would break; None: the general default."""
        return None


DEFAULT_PRETRAIN_LR = 1e-3


def pretraining_lr(methods: list[type[PretextTask]], batch_size: int) -> float:
    """The learning rate a run without ``lr`` uses: the smallest any of its methods recommends (a combination
    must not break its most sensitive member), else the general default."""
    recommended = [lr for lr in (cls.recommended_lr(batch_size) for cls in methods) if lr is not None]
    return min(recommended, default=DEFAULT_PRETRAIN_LR)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 batches travel to the device as they are and become float in [0, 1] there."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


class Pretrainer(pl.LightningModule):
    def __init__(self, encoder: Encoder, tasks: list[PretextTask], weights: list[float], num_classes: int,
                 lr: float = 1e-3, weight_decay: float = 1e-4, warmup_fraction: float = 0.05) -> None:
        super().__init__()
        if len(tasks) != len(weights):
            raise ValueError("one weight per task")
        self.encoder = encoder
        self.tasks = nn.ModuleList(tasks)
        self.weights = list(weights)
        self.probe = nn.Linear(encoder.feature_dim, max(num_classes, 1))
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        x = to_unit_float(images)
        total = x.new_zeros(())
        features = None
        multi = len(self.tasks) > 1
        # sync_dist: under DDP the logged epoch means cover every rank's samples (no-op on one process)
        for task, weight in zip(self.tasks, self.weights, strict=True):
            out = task(self.encoder, x)
            total = total + weight * out.loss
            features = out.features if features is None else features
            if multi:
                self.log(f"train/{task.name}_loss", out.loss.detach(), on_epoch=True, on_step=False, sync_dist=True)
            for key, value in out.logs.items():
                self.log(f"train/{task.name}_{key}", value, on_epoch=True, on_step=False, sync_dist=True)
        self.log("train/loss", total.detach(), on_epoch=True, on_step=False, prog_bar=True, sync_dist=True)
        total = total + self._probe_loss(features, labels)
        return total

    def _probe_loss(self, features: Tensor | None, labels: Tensor) -> Tensor:
        if features is None:
            return torch.zeros((), device=labels.device)
        logits = self.probe(features.detach().float())
        labelled = labels != UNLABELED
        loss = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
        loss = (loss * labelled).sum() / labelled.sum().clamp_min(1)
        acc = ((logits.argmax(1) == labels) & labelled).sum() / labelled.sum().clamp_min(1)
        self.log("train/probe_acc", acc, on_epoch=True, on_step=False, prog_bar=True, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        total = max(1, self.trainer.estimated_stepping_batches)
        progress = min(1.0, self.global_step / total)
        for task in self.tasks:
            task.on_step_end(self.encoder, progress)

    def configure_optimizers(self) -> dict:
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(self.warmup_fraction * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def decoder(self) -> nn.Module | None:
        """The decoder of the first generative task, if any (saved for segmentation transfer)."""
        return next((t.decoder for t in self.tasks if t.decoder is not None), None)
