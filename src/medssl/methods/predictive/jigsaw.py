"""Jigsaw puzzles (Noroozi & Favaro 2016): recover which permutation shuffled the image's tiles.

A 3x3 (2D) or 2x2x2 (3D) grid of jittered tiles is shuffled by one permutation from a fixed set of
well-separated permutations (``hamming_permutations``). Every tile is encoded by the shared encoder
on its own (a siamese "context-free" network), the features are concatenated in shuffled order and
an MLP classifies the permutation's index in the set.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import gaussian_noise, random_contrast
from medssl.views.patches import grid_layout, grid_patches

# Above this many permutations the candidate pool is a seeded random sample instead of all of them.
_MAX_CANDIDATES = 100_000


@functools.lru_cache(maxsize=16)
def _greedy_permutations(n_items: int, n_perms: int, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    if math.factorial(n_items) <= _MAX_CANDIDATES:
        pool = np.array(list(itertools.permutations(range(n_items))), dtype=np.int8)
    else:
        pool = np.argsort(rng.random((_MAX_CANDIDATES, n_items)), axis=1).astype(np.int8)
        pool = np.unique(pool, axis=0)
    if n_perms > len(pool):
        raise ValueError(f"cannot choose {n_perms} distinct permutations of {n_items} items")
    chosen = [int(rng.integers(len(pool)))]
    nearest = (pool != pool[chosen[0]]).sum(1)  # each candidate's distance to the chosen set
    min_distance = n_items
    for _ in range(n_perms - 1):
        best = int(nearest.argmax())
        min_distance = min(min_distance, int(nearest[best]))
        chosen.append(best)
        nearest = np.minimum(nearest, (pool != pool[best]).sum(1))
    perms = pool[chosen].astype(np.int64)
    perms.setflags(write=False)
    return perms, min_distance


def hamming_permutations(n_items: int, n_perms: int, seed: int = 0) -> tuple[Tensor, int]:
    """A set of ``n_perms`` permutations of ``range(n_items)`` spread out in Hamming distance.

    Greedy farthest-point selection: start from a random permutation, then repeatedly add the
    candidate whose smallest Hamming distance to the permutations chosen so far is largest. This is
    Noroozi & Favaro's Algorithm 1 with the minimum in place of their sum over the chosen set, so it
    directly maximises (greedily) the set's minimum distance. Candidates are every permutation when
    there are at most 100k of them (8! = 40320), otherwise 100k random ones drawn from ``seed``.
    Returns the (n_perms, n_items) long tensor and the minimum pairwise Hamming distance of the set.
    Deterministic for a given ``(n_items, n_perms, seed)``.
    """
    if n_items < 2 or n_perms < 1:
        raise ValueError("need n_items >= 2 and n_perms >= 1")
    perms, min_distance = _greedy_permutations(n_items, n_perms, seed)
    return torch.from_numpy(perms.copy()), min_distance


def shuffle_patches(patches: Tensor, perms: Tensor, labels: Tensor) -> Tensor:
    """Shuffle (B, N, ...) patches: output slot i of sample b holds patch ``perms[labels[b], i]``.

    ``shuffled.gather(1, argsort(perm))`` (the inverse permutation) restores the original order.
    """
    order = perms.to(patches.device)[labels]  # (B, N)
    return patches[torch.arange(len(patches), device=patches.device)[:, None], order]


@register
class Jigsaw(PretextTask):
    name = "jigsaw"
    family = "predictive"

    def __init__(self, encoder: Encoder, n_perms: int | None = None, patch_fraction: float = 0.7,
                 jitter_fraction: float = 0.1, hidden_dim: int | None = None, seed: int = 0) -> None:
        """``n_perms``: permutation-set size (default 100 in 2D, 50 in 3D); tile geometry as in RPL."""
        super().__init__(encoder)
        n = encoder.spatial_dims
        self.grid = 3 if n == 2 else 2
        self.n_tiles = self.grid**n
        self.patch_fraction = patch_fraction
        self.jitter_fraction = jitter_fraction
        n_perms = n_perms or (100 if n == 2 else 50)
        perms, self.min_hamming = hamming_permutations(self.n_tiles, n_perms, seed)
        self.register_buffer("perms", perms)
        hidden = hidden_dim or 4 * encoder.feature_dim
        self.head = nn.Sequential(
            nn.Linear(self.n_tiles * encoder.feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_perms),
        )

    def scramble(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Jittered tiles (B, N, C, *tile) in shuffled order and the index of their permutation (B,)."""
        patch, jitter = grid_layout(x.shape[2:], self.grid, self.patch_fraction, self.jitter_fraction)
        tiles = grid_patches(x, self.grid, patch, jitter)
        targets = torch.randint(len(self.perms), (len(x),), device=x.device)
        return shuffle_patches(tiles, self.perms, targets), targets

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        batch = len(x)
        shuffled, targets = self.scramble(x)
        # per-tile intensity views, so tiles cannot be ordered by matching their grey levels
        tiles = gaussian_noise(random_contrast(shuffled.flatten(0, 1)))
        features = encoder(tiles).reshape(batch, self.n_tiles, -1)
        logits = self.head(features.flatten(1))
        accuracy = (logits.argmax(1) == targets).float().mean()
        # probe features: mean over the tiles, which is independent of their order
        return TaskOutput(F.cross_entropy(logits, targets), features.mean(1), {"acc": accuracy.detach()})
