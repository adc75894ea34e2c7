"""Patch-based segmentation training, sliding-window inference and evaluation, 2D and 3D alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from medssl.data.masks import SegSplit
from medssl.finetune.policies import augmentation
from medssl.methods.base import to_unit_float
from medssl.models.segmenter import Segmenter
from medssl.tasks.segment.metrics import evaluation_spacing, image_metrics, summarise
from medssl.tasks.selection import KeepsBest, adamw_warmup_cosine
from medssl.views import random_gamma

THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.1 ... 0.9


class PatchSampler(IterableDataset):
    """``steps`` batches of random patches per epoch; a patch is centred on a foreground pixel with
    probability ``pos_fraction`` (as MONAI's RandCropByPosNegLabel), else anywhere (inside the FOV if any).

    Resumable (``training.ResumableRun``): ``stream_state`` is the generator state a resumed run continues
    from, ``start_batch`` skips the batches of the interrupted epoch already trained on (once)."""

    def __init__(self, split: SegSplit, patch: int, batch_size: int, steps: int, pos_fraction: float = 0.5,
                 seed: int = 0) -> None:
        self.images, self.masks = split.images, split.masks
        self.spatial = split.images.shape[2:]
        self.patch = tuple(min(patch, s) for s in self.spatial)
        self.batch_size, self.steps, self.pos_fraction = batch_size, steps, pos_fraction
        self.foreground = [np.flatnonzero(m[0] >= 128) for m in split.masks]
        self.anywhere = [np.flatnonzero(f[0]) for f in split.fov] if split.fov is not None else None
        self.rng = np.random.default_rng(seed)
        self.epoch = 0  # the epoch being drawn
        self.start_batch = 0
        self._next_epoch = 0
        self._state_before: dict[int, dict] = {}  # generator state before each batch of the current epoch
        self._epoch_done = False

    def set_epoch(self, epoch: int) -> None:
        self._next_epoch = epoch

    def stream_state(self, batches_done: int) -> dict:
        """The generator state after ``batches_done`` batches of the current epoch. Lightning fetches a batch
        ahead of training it, so the generator itself may already be one batch further."""
        if self._epoch_done or batches_done not in self._state_before:
            return self.rng.bit_generator.state
        return self._state_before[batches_done]

    def load_stream_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _centre(self, i: int) -> np.ndarray:
        pool = self.foreground[i] if self.rng.random() < self.pos_fraction else None
        if pool is None or pool.size == 0:
            pool = self.anywhere[i] if self.anywhere is not None else None
        if pool is None or pool.size == 0:
            return np.array([self.rng.integers(0, s) for s in self.spatial])
        return np.array(np.unravel_index(pool[self.rng.integers(0, pool.size)], self.spatial))

    def batch(self) -> tuple[Tensor, Tensor]:
        which = self.rng.integers(0, len(self.images), self.batch_size)
        half = np.array(self.patch) // 2
        limit = np.array(self.spatial) - np.array(self.patch)
        images, masks = [], []
        for i in which:
            start = np.clip(self._centre(i) - half, 0, limit)
            window = tuple(slice(a, a + p) for a, p in zip(start, self.patch, strict=True))
            images.append(self.images[(i, slice(None), *window)])
            masks.append(self.masks[(i, slice(None), *window)])
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))

    def __iter__(self):
        self.epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        start, self.start_batch = self.start_batch, 0
        self._state_before, self._epoch_done = {}, False
        for step in range(start, self.steps):
            self._state_before[step] = self.rng.bit_generator.state
            yield self.batch()
        self._epoch_done = True

    def __len__(self) -> int:
        return self.steps


def random_flips(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Flip each sample independently along each spatial axis with probability 1/2 (image and mask alike)."""
    for axis in range(2, x.ndim):
        chosen = (torch.rand(x.shape[0], device=x.device) < 0.5).reshape(-1, *[1] * (x.ndim - 1))
        x = torch.where(chosen, x.flip(axis), x)
        y = torch.where(chosen, y.flip(axis), y)
    return x, y


@dataclass(frozen=True)
class JointAugmentation:
    """One augmentation of ``config.augment`` applied to image and mask alike. ``light`` (the default) is
    flips plus a random gamma on the image; a ladder rung (``finetune.policies.augmentation``) transforms
    image and mask stacked along channels, so each sample's geometry is drawn once for both (an
    interpolated mask stays a soft coverage target, as the resized training masks already are)."""

    name: str

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.name == "light":
            x, y = random_flips(x, y)
            return random_gamma(x, gamma=(0.7, 1.5), p=0.5), y
        both = augmentation(self.name)(torch.cat([x, y], dim=1))
        return both[:, :x.shape[1]], both[:, x.shape[1]:]


def segmentation_augmentation(name: str) -> JointAugmentation | None:
    """The joint image/mask augmentation for an ``augment`` option (``none``: no augmentation)."""
    if name == "none":
        return None
    augmentation(name)  # unknown names fail here, not in the first training step
    return JointAugmentation(name)


def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - Dice of sigmoid probabilities pooled over the batch (stable when patches lack foreground)."""
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum()
    return 1 - (2 * inter + eps) / (probs.sum() + target.sum() + eps)


@torch.no_grad()
def predict_probs(model: Segmenter, images: np.ndarray, patch: int, batch_size: int = 8,
                  overlap: float = 0.25) -> list[Tensor]:
    """Foreground probabilities (1, *spatial) of each image by Gaussian-weighted sliding windows."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for image in images:
        x = to_unit_float(torch.from_numpy(image[None]).to(device))
        roi = tuple(min(patch, s) for s in x.shape[2:])
        logits = sliding_window_inference(x, roi, batch_size, model, overlap=overlap, mode="gaussian")
        out.append(torch.sigmoid(torch.as_tensor(logits)[0].float()).cpu())
    model.train(was_training)
    return out


def _resample(probs: Tensor, shape: tuple[int, ...]) -> Tensor:
    if tuple(shape) == tuple(probs.shape[1:]):
        return probs
    mode = "bilinear" if probs.ndim == 3 else "trilinear"
    return F.interpolate(probs[None], size=tuple(shape), mode=mode, align_corners=False)[0]


def evaluate(model: Segmenter, split: SegSplit, patch: int, threshold: float = 0.5, native: bool = True
             ) -> tuple[dict[str, float], list[dict[str, float]], list[np.ndarray]]:
    """Summary metrics, per-image metrics and binary predictions. With ``native``, at the original resolution
    when the images were resized (probabilities are interpolated back first); else at the working one."""
    per_image, predictions = [], []
    for i, probs in enumerate(predict_probs(model, split.images, patch)):
        truth, fov = split.eval_masks(i, native)
        pred = (_resample(probs, truth.shape[1:]) >= threshold).numpy()
        spacing = None if split.spacing is None else evaluation_spacing(
            split.spacing[i], split.masks.shape[2:], truth.shape[1:])  # HD95 in mm when the source knows it
        per_image.append(image_metrics(pred, truth, fov, spacing))
        predictions.append(pred)
    return summarise(per_image), per_image, predictions


def select_threshold(model: Segmenter, split: SegSplit, patch: int,
                     candidates: tuple[float, ...] = THRESHOLDS) -> tuple[float, float]:
    """The probability threshold with the best mean Dice on ``split`` (validation images, inside the FOV,
    at the resolution test metrics use) and that Dice. Ties go to the threshold nearest 0.5."""
    scores = np.zeros(len(candidates))
    for i, probs in enumerate(predict_probs(model, split.images, patch)):
        truth, fov = split.eval_masks(i)
        probs = _resample(probs, truth.shape[1:]).numpy()
        truth = truth.astype(bool) if fov is None else truth & fov
        for j, t in enumerate(candidates):
            pred = probs >= t if fov is None else (probs >= t) & fov
            total = pred.sum() + truth.sum()
            scores[j] += 2 * (pred & truth).sum() / total if total else 1.0
    order = sorted(range(len(candidates)), key=lambda j: (-scores[j], abs(candidates[j] - 0.5)))
    return float(candidates[order[0]]), float(scores[order[0]] / len(split))


class SegmentationModule(KeepsBest, pl.LightningModule):
    """Dice + BCE on random patches; ``val/dice`` (sliding window on whole val images) selects the model."""

    checkpoint_key = "segmentation"

    def __init__(self, model: Segmenter, val: SegSplit, patch: int, lr: float = 1e-3, weight_decay: float = 1e-4,
                 augment: JointAugmentation | None = None) -> None:
        super().__init__()
        self.model = model
        self.val = val
        self.patch = patch
        self.lr = lr
        self.weight_decay = weight_decay
        self.augment = augment
        self.init_selection("dice")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        x, y = to_unit_float(images), to_unit_float(masks)
        if self.augment is not None:
            x, y = self.augment(x, y)
        logits = self(x)
        loss = F.binary_cross_entropy_with_logits(logits, y) + soft_dice_loss(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # validation is whole-image sliding-window inference, run here rather than through a val loader
        summary, _, _ = evaluate(self.model, self.val, self.patch, native=False)
        self.log("val/dice", summary["dice"], prog_bar=True)
        self.record(summary, self.model)

    def configure_optimizers(self) -> dict:
        return adamw_warmup_cosine(self, self.lr, self.weight_decay)


def patch_loader(sampler: PatchSampler, seed: int = 0) -> DataLoader:
    # its own generator: creating an epoch's iterator must not draw from the global RNG the augmentations
    # use, or a run resumed mid-epoch (one extra iterator) would augment differently from an uninterrupted one
    return DataLoader(sampler, batch_size=None, generator=torch.Generator().manual_seed(seed))
