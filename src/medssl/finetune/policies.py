"""Fine-tuning training policies: the augmentation ladder, class-weighted / focal loss, label smoothing,
mixup and class-balanced sampling weights. Defaults reproduce plain cross-entropy exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.views import ViewPipeline, light_view, random_resized_crop, rotate_by_class, rotation_classes

LADDER = ("none", "flips", "rot90", "rotate", "scale")  # each rung keeps the ones before it
SMALL_ROTATION_DEGREES = 15.0
SCALE_AREA = (0.64, 1.0)  # isotropic zoom-in by up to 1.25x per axis


def random_flips(x: Tensor) -> Tensor:
    """Mirror each spatial axis of each sample with probability 1/2."""
    out = x
    for axis in range(2, x.ndim):
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = torch.where(flip.view(shape), out.flip(axis), out)
    return out


def random_rot90(x: Tensor) -> Tensor:
    """A random quarter-turn class per sample (identity included); needs square / cubic images."""
    dims = x.ndim - 2
    classes = torch.randint(len(rotation_classes(dims)), (x.shape[0],), device=x.device)
    return rotate_by_class(x, classes, dims)


def augmentation(name: str) -> ViewPipeline | None:
    """The fine-tuning view for ``FinetuneConfig.augment``: ``light`` (crop + flips, the default) or a
    ladder rung: none -> flips -> +rot90 -> +small rotations -> +scaling."""
    if name == "light":
        return light_view()
    if name not in LADDER:
        raise ValueError(f"unknown augmentation '{name}'")
    rung = LADDER.index(name)
    ops: list = []
    if rung >= 1:
        ops.append(random_flips)
    if rung >= 2:
        ops.append(random_rot90)
    if rung >= 3:  # one resampling for rotation (and zoom): interpolating twice would blur twice
        area = SCALE_AREA if rung >= 4 else (1.0, 1.0)
        ops.append(partial(random_resized_crop, scale=area, ratio=(1.0, 1.0),
                           rotate_degrees=SMALL_ROTATION_DEGREES, flip=False))
    return ViewPipeline(ops) if ops else None


def class_weights(class_counts: Sequence[int]) -> Tensor:
    """Inverse-frequency weights with mean 1 over the classes present (absent classes get 0)."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32)
    weights = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    return weights * (counts > 0).sum() / weights.sum()


def balanced_sample_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights 1 / (size of its class): a weighted draw picks every class equally often."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def soft_targets(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    targets = F.one_hot(labels, num_classes).float()
    return targets * (1 - smoothing) + smoothing / num_classes


def classification_loss(logits: Tensor, targets: Tensor, *, weights: Tensor | None = None,
                        focal_gamma: float | None = None) -> Tensor:
    """Cross-entropy against soft ``targets`` (B, K); ``weights`` per class (normalised like
    ``F.cross_entropy(weight=...)``: by the batch's total target weight); ``focal_gamma`` gives focal loss,
    -(1 - p_c)^gamma log p_c per class, which is cross-entropy at gamma = 0."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    per_class = -targets * log_probs
    if focal_gamma is not None:
        per_class = per_class * (1 - log_probs.exp()).pow(focal_gamma)
    if weights is None:
        return per_class.sum(1).mean()
    weights = weights.to(logits.device)
    return (per_class * weights).sum() / (targets * weights).sum()


def mixup(x: Tensor, targets: Tensor, alpha: float) -> tuple[Tensor, Tensor, float]:
    """Mix each sample (and its targets) with a random partner; lam ~ Beta(alpha, alpha) per batch."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm], lam


@dataclass
class LossPolicy:
    """The training loss of a ``Classifier``: called as ``policy(model, x, labels) -> loss``."""

    num_classes: int
    weights: Tensor | None = None
    focal_gamma: float | None = None
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0

    def __call__(self, model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
        targets = soft_targets(labels, self.num_classes, self.label_smoothing)
        if self.mixup_alpha > 0:
            x, targets, _ = mixup(x, targets, self.mixup_alpha)
        return classification_loss(model(x), targets, weights=self.weights, focal_gamma=self.focal_gamma)


def loss_policy(loss: str, class_counts: Sequence[int], *, focal_gamma: float = 2.0, label_smoothing: float = 0.0,
                mixup_alpha: float = 0.0) -> LossPolicy | None:
    """None for plain cross-entropy (the Classifier's own, unchanged path)."""
    if loss == "ce" and label_smoothing == 0 and mixup_alpha == 0:
        return None
    return LossPolicy(num_classes=len(class_counts),
                      weights=class_weights(class_counts) if loss == "weighted_ce" else None,
                      focal_gamma=focal_gamma if loss == "focal" else None,
                      label_smoothing=label_smoothing, mixup_alpha=mixup_alpha)
