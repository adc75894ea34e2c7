"""Fine-tuning for classification: an encoder plus a linear head. The head may start from a converged linear
probe (``finetune.probe``): frozen, that is the linear probe; trained on, it is LP-FT."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.finetune.metrics import classification_metrics
from medssl.finetune.predictions import SplitPredictions
from medssl.methods.base import to_unit_float, warmup_cosine
from medssl.models.encoder import Encoder
from medssl.views import ViewPipeline


class Classifier(pl.LightningModule):
    """Selects on validation AUC (``val/score``); test metrics are computed once, on the selected model.
    ``encoder_lr_mult`` scales the encoder's learning rate relative to the head's (``lr``)."""

    def __init__(self, encoder: Encoder, num_classes: int, *, linear_probe: bool = False, lr: float = 1e-3,
                 weight_decay: float = 1e-4, augment: ViewPipeline | None = None,
                 loss: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
                 encoder_lr_mult: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        self.num_classes = num_classes
        self.linear_probe = linear_probe
        self.lr = lr
        self.weight_decay = weight_decay
        self.encoder_lr_mult = encoder_lr_mult
        self.augment = augment
        self.loss = loss  # a training policy (finetune.policies.LossPolicy); None = plain cross-entropy
        if linear_probe:
            self.encoder.requires_grad_(False)
        self.results: dict[str, dict] = {}
        self.predictions: dict[str, SplitPredictions] = {}  # per stage, of the last evaluation
        self._outputs: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def on_train_epoch_start(self) -> None:
        if self.linear_probe:
            self.encoder.eval()  # frozen features: BatchNorm keeps its pre-trained statistics

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        x = to_unit_float(images)
        if self.augment is not None:
            x = self.augment(x)
        loss = F.cross_entropy(self(x), labels) if self.loss is None else self.loss(self, x, labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _collect(self, batch: tuple[Tensor, Tensor]) -> None:
        images, labels = batch
        probs = torch.softmax(self(to_unit_float(images)).float(), dim=1)
        self._outputs.append((probs.cpu(), labels.cpu()))

    def _summarise(self, stage: str) -> dict:
        probs = torch.cat([p for p, _ in self._outputs]).numpy()
        labels = torch.cat([y for _, y in self._outputs]).numpy()
        self._outputs.clear()
        # evaluation loaders are unshuffled and keep every image, so row i is the split's image i
        self.predictions[stage] = SplitPredictions(probs, labels, np.arange(len(labels)))
        metrics = classification_metrics(probs, labels)
        metrics["loss"] = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)),
                                           torch.from_numpy(labels)))
        self.results[stage] = metrics
        return metrics

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self._summarise("val")
        # AUC is undefined when the validation set lacks a class; fall back to balanced accuracy
        score = metrics["auc"] if math.isfinite(metrics["auc"]) else metrics["balanced_acc"]
        self.log("val/score", score, prog_bar=True)
        self.log("val/auc", metrics["auc"] if math.isfinite(metrics["auc"]) else np.nan)
        self.log("val/loss", metrics["loss"])

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        self._summarise("test")

    def configure_optimizers(self) -> dict:
        groups = [{"params": [p for p in self.head.parameters() if p.requires_grad], "lr": self.lr},
                  {"params": [p for p in self.encoder.parameters() if p.requires_grad],
                   "lr": self.lr * self.encoder_lr_mult}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, total // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
