"""A linear head trained to convergence on frozen features: the convex-solver probe of ``medssl evaluate
--protocol linear`` (L2 logistic regression on cached, standardised features; regularisation chosen on
validation), folded into an ``nn.Linear`` over raw encoder features. It is the linear probe of
``finetune --linear-probe`` and the starting head of LP-FT (linear probe, then full fine-tuning).

Unlike ``evaluate``'s probe, classes are weighted to balance: C is chosen on validation AUC, which ignores
the intercept, and with few labels the strongest regularisation often ties for best; unweighted, its
intercept is the majority prior and every argmax prediction is the majority class (measured on BreastMNIST
at 10 % labels: minority recall 0.00 for 2 of 3 seeds, 0.50-0.64 balanced, validation AUC within 0.01).

For LP-FT the encoder's BatchNorm statistics are first re-estimated on the labelled training images: fine-
tuning normalises with batch statistics, and a head fitted to features under other running statistics
(a random encoder's are uncalibrated: its eval-mode features sit ~60 standard deviations from its
train-mode ones) would see different features from the first step on and saturate."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medssl.data.dataset import Split
from medssl.evaluate.embeddings import BATCH_SIZE, embed_split
from medssl.evaluate.linear import LinearProbe, fit_linear_probe
from medssl.methods.base import to_unit_float
from medssl.models.encoder import Encoder

CLASS_WEIGHT = "balanced"  # scikit-learn: each class weighs n / (K x its count)
ABSENT_CLASS_LOGIT = -50.0  # a class the probe never saw gets probability ~exp(-50): none, as sklearn says


def head_state(probe: LinearProbe, feature_dim: int) -> dict[str, Tensor]:
    """``weight`` (K, D) and ``bias`` (K,) whose softmax over raw features equals ``probe.predict_proba``.

    Standardisation is folded in: w . (x - mean) / scale + b = (w / scale) . x + (b - w . mean / scale).
    A binary logistic regression has one logit, w . z + b for class 1 against 0 for class 0; the softmax of
    (0, w . z + b) is its sigmoid."""
    coef = np.asarray(probe.model.coef_, dtype=np.float64)
    intercept = np.asarray(probe.model.intercept_, dtype=np.float64)
    classes = [int(c) for c in probe.model.classes_]
    if len(classes) == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    scale = np.asarray(probe.scaler.scale_, dtype=np.float64)
    mean = np.asarray(probe.scaler.mean_, dtype=np.float64)
    weight = np.zeros((probe.num_classes, feature_dim))
    bias = np.full(probe.num_classes, ABSENT_CLASS_LOGIT)
    weight[classes] = coef / scale
    bias[classes] = intercept - (coef / scale) @ mean
    return {"weight": torch.from_numpy(weight).float(), "bias": torch.from_numpy(bias).float()}


@torch.no_grad()
def calibrate_batchnorm(encoder: Encoder, images: np.ndarray, *, batch_size: int = BATCH_SIZE,
                        device: torch.device | None = None) -> None:
    """Replace every BatchNorm's running mean / variance by their average over ``images`` (uint8)."""
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    was_training = encoder.training
    encoder.train().to(device or torch.device("cpu"))
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        encoder(to_unit_float(batch.to(device or torch.device("cpu"))))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    encoder.train(was_training)


def fit_probe_head(encoder: Encoder, train: Split, val: Split, num_classes: int, *, seed: int = 0,
                   calibrate_bn: bool = False, device: torch.device | None = None) -> tuple[dict[str, Tensor], dict]:
    """Fit the probe on the frozen (eval-mode, un-augmented) features of the labelled ``train`` images, its
    regularisation chosen on ``val``; return the head's state and what was chosen. ``calibrate_bn`` (LP-FT)
    first re-estimates the BatchNorm statistics on the labelled training images."""
    if calibrate_bn:
        calibrate_batchnorm(encoder, train.images[train.labels >= 0], device=device)
    was_training = encoder.training
    embedded = {name: embed_split(encoder, split, name, device=device).labelled()
                for name, split in (("train", train), ("val", val))}
    encoder.train(was_training)
    probe = fit_linear_probe(embedded["train"].features, embedded["train"].labels, embedded["val"].features,
                             embedded["val"].labels, num_classes, seed=seed, class_weight=CLASS_WEIGHT)
    details = {"solver": "L2 logistic regression (scikit-learn lbfgs) on standardised frozen features",
               "class_weight": CLASS_WEIGHT, "c": probe.c,
               "batchnorm": "re-estimated on the labelled training images" if calibrate_bn else "as loaded",
               "val_auc_by_c": {str(c): s for c, s in probe.val_scores.items()}}
    return head_state(probe, encoder.feature_dim), details
