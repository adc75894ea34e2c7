"""Relative patch location (Doersch et al. 2015; 3D version: Taleb et al. 2020).

The image is divided into a 3x3 (2D) or 3x3x3 (3D) grid. The centre patch and neighbours are
cropped with a gap and random jitter (so edges cannot simply be matched), encoded by the shared
encoder in one batch, and a head classifies each neighbour's position from the concatenated
features of its (centre, neighbour) pair: 8 classes in 2D, 26 in 3D.

The papers draw one random neighbour per image. By default every neighbour is classified instead
(``pairs=None``): the same objective with its expectation over the neighbour taken exactly, for
8 / 26 times the labels per image at the cost of encoding 9 / 27 patches instead of 2. It matters
on small, sparse volumes: with one pair per image the loss barely moves in 30 steps on
AdrenalMNIST3D at 14^3, where most 3^3 neighbour patches are empty. ``pairs=1`` is the papers' setting.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import gaussian_noise, random_contrast
from medssl.views.patches import grid_layout, grid_patches

GRID = 3


def neighbour_offsets(spatial_dims: int) -> Tensor:
    """Grid offset of each class, (3**n - 1, n) in {-1, 0, 1}: row-major order with the centre left out."""
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=spatial_dims) if any(o)]
    return torch.tensor(offsets, dtype=torch.long)


def rpl_patches(x: Tensor, labels: Tensor, patch_fraction: float, jitter_fraction: float) -> tuple[Tensor, Tensor]:
    """The centre patch (B, C, *patch) and the neighbours at classes ``labels`` (B, K) as (B, K, C, *patch)."""
    n = x.ndim - 2
    centre = (GRID**n - 1) // 2  # row-major index of the centre cell
    neighbours = labels + (labels >= centre).long()  # class k -> cell k, skipping the centre
    cells = torch.cat([torch.full_like(neighbours[:, :1], centre), neighbours], dim=1)
    patch, jitter = grid_layout(x.shape[2:], GRID, patch_fraction, jitter_fraction)
    patches = grid_patches(x, GRID, patch, jitter, cells)
    return patches[:, 0], patches[:, 1:]


@register
class RelativePatchLocation(PretextTask):
    name = "rpl"
    family = "predictive"

    def __init__(self, encoder: Encoder, pairs: int | None = None, patch_fraction: float = 0.7,
                 jitter_fraction: float = 0.1, hidden_dim: int | None = None) -> None:
        """``pairs``: distinct random neighbours classified per image (None: all; 1 in the papers).
        ``patch_fraction``: patch side / cell side; ``jitter_fraction``: largest shift / cell side
        (reduced so neighbours keep a gap of at least one voxel)."""
        super().__init__(encoder)
        self.num_classes = GRID**encoder.spatial_dims - 1
        pairs = self.num_classes if pairs is None else pairs
        if not 1 <= pairs <= self.num_classes:
            raise ValueError(f"pairs must lie in [1, {self.num_classes}]")
        self.pairs = pairs
        self.patch_fraction = patch_fraction
        self.jitter_fraction = jitter_fraction
        hidden = hidden_dim or 2 * encoder.feature_dim
        self.head = nn.Sequential(
            nn.Linear(2 * encoder.feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, self.num_classes),
        )

    def sample(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Centre patches (B, C, *p), neighbour patches (B, K, C, *p) and their classes (B, K)."""
        # K distinct neighbour classes per image: the first K of a random permutation (all: every class)
        targets = torch.rand(len(x), self.num_classes, device=x.device).argsort(1)[:, : self.pairs]
        centre, neighbours = rpl_patches(x, targets, self.patch_fraction, self.jitter_fraction)
        return centre, neighbours, targets

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        batch, k = len(x), self.pairs
        # intensity views per image, before cropping: they vary the appearance but keep the relative
        # intensity of the patches (tissue layers, shadowing), a real cue for their arrangement
        centre, neighbours, targets = self.sample(gaussian_noise(random_contrast(x)))
        features = encoder(torch.cat([centre, neighbours.flatten(0, 1)]))
        centre_features, neighbour_features = features[:batch], features[batch:].reshape(batch, k, -1)
        pairs = torch.cat([centre_features[:, None].expand_as(neighbour_features), neighbour_features], dim=2)
        logits = self.head(pairs).flatten(0, 1)
        targets = targets.flatten()
        accuracy = (logits.argmax(1) == targets).float().mean()
        # probe features: mean over the encoded patches (no extra encoder pass on the whole image)
        probe = (centre_features + neighbour_features.sum(1)) / (k + 1)
        return TaskOutput(F.cross_entropy(logits, targets), probe, {"acc": accuracy.detach()})
