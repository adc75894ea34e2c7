"""Anomaly scorers. ``knn``: mean cosine distance of an image's frozen encoder features to its k nearest normal
training images (image level only). ``reconstruction``: the error of the generative pretext model, per pixel
(the anomaly map) and its mean per image: the squared error of the restored image for autoencoder-style
methods (autoencoder, denoising autoencoder, Models Genesis: the clean image goes in), and for SparK the
masked-patch error (against per-patch normalised pixels, as its loss) averaged over several random masks,
each patch counted in the masks that hid it."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medssl.evaluate.embeddings import map_batches
from medssl.evaluate.knn import cosine_neighbours
from medssl.methods.base import PretextTask
from medssl.methods.generative.autoencoder import Autoencoder
from medssl.methods.generative.spark import SparK, patch_errors
from medssl.models.encoder import Encoder
from medssl.models.sparse import random_visible_mask, upsample_mask

BATCH_SIZE = 64


def knn_scores(encoder: Encoder, normal_train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    bank = map_batches(encoder, normal_train)
    queries = map_batches(encoder, test)
    _, similarities = cosine_neighbours(bank, queries, k)
    return (1.0 - similarities).mean(1)


def reconstructs(method: type[PretextTask]) -> bool:
    return issubclass(method, Autoencoder | SparK)


class ReconstructionError:
    """Per-pixel error maps (B, 1, *spatial) of a generative pretext task on unit-float images."""

    def __init__(self, encoder: Encoder, task: PretextTask, masks: int = 8) -> None:
        if not reconstructs(type(task)):
            raise ValueError(f"method '{task.name}' does not reconstruct images")
        self.encoder, self.task, self.masks = encoder, task, masks

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        if isinstance(self.task, SparK):
            return self._masked(x)
        restored = torch.sigmoid(self.task.decoder(self.encoder.pyramid(x), output_size=x.shape[2:]))
        return (restored - x).square().mean(1, keepdim=True)

    def _masked(self, x: Tensor) -> Tensor:
        sparse = self.task._sparse_encoder(self.encoder)
        coarse = sparse.coarse_size(x.shape[2:])
        total = x.new_zeros(len(x), int(np.prod(coarse)))
        counted = torch.zeros_like(total)
        for _ in range(self.masks):
            visible = random_visible_mask(len(x), coarse, self.task.mask_ratio, x.device)
            pyramid = sparse.pyramid(x, visible)
            prediction = self.task.decoder(self.task.densify(pyramid, visible), output_size=x.shape[2:])
            hidden = (~visible.flatten(1)).float()
            total += patch_errors(prediction, x, visible) * hidden
            counted += hidden
        # a patch no mask hid (rare with several masks) gets the image's mean error
        mean = (total.sum(1, keepdim=True) / counted.sum(1, keepdim=True).clamp_min(1))
        cells = torch.where(counted > 0, total / counted.clamp_min(1), mean)
        return upsample_mask(cells.reshape(len(x), 1, *coarse), x.shape[2:])


def reconstruction_maps(scorer: ReconstructionError, images: np.ndarray) -> np.ndarray:
    """Anomaly maps (N, 1, *spatial) float32 of uint8 images, in batches, models in eval mode."""
    scorer.encoder.eval()
    scorer.task.eval()
    return map_batches(scorer, images, batch_size=BATCH_SIZE)
