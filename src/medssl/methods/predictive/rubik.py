"""Rubik's cube+ (Zhu et al. 2020, MedIA; Tao et al. 2020): play a 2x2x2 Rubik's cube, 3D only.

The volume is cut into 2x2x2 jittered cubes, which are
- reordered by one permutation from a Hamming-distance set (``hamming_permutations``, shared with
  jigsaw): the ordering head classifies its index;
- rotated each, independently, by 0 or 180 degrees about one of the three axes: the rotation head
  answers, per cube and axis, "was it turned about this axis?" (multi-label, binary cross-entropy);
- masked at random (the "+"): a random box inside a cube is filled with uniform noise, an input
  perturbation that forces both heads to rely on more than a few voxels (no head predicts it).

Each cube is encoded by the shared encoder on its own (siamese); both heads read the concatenated
cube features in shuffled order. Loss = ordering cross-entropy + rotation binary cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.predictive.jigsaw import hamming_permutations, shuffle_patches
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import box_mask, random_contrast
from medssl.views.patches import grid_layout, grid_patches

GRID = 2


def rotate_cubes(cubes: Tensor, rotations: Tensor) -> Tensor:
    """Turn each (N, C, D, H, W) cube 180 degrees about spatial axis ``rotations[i] - 1`` (0: keep).

    A half turn about axis a is ``torch.rot90(cube, 2, dims)`` in the plane of the two other axes.
    """
    if cubes.ndim != 5:
        raise ValueError(f"expected (N, C, D, H, W) cubes, got shape {tuple(cubes.shape)}")
    out = cubes.clone()
    for axis in range(3):
        plane = [d for d in (-3, -2, -1) if d != axis - 3]
        chosen = rotations == axis + 1
        out[chosen] = torch.rot90(cubes[chosen], 2, plane)
    return out


def mask_cubes(cubes: Tensor, p: float, size: tuple[float, float] = (0.3, 0.6)) -> Tensor:
    """With probability p per cube, fill one random box (sides a fraction ``size`` of each axis) with U(0, 1)."""
    chosen = torch.rand(len(cubes), device=cubes.device) < p
    mask = box_mask(len(cubes), cubes.shape[2:], n_boxes=(1, 1), size=size, device=cubes.device)
    mask &= chosen.reshape(-1, *([1] * (cubes.ndim - 1)))
    return torch.where(mask, torch.rand_like(cubes), cubes)


@register
class RubiksCube(PretextTask):
    name = "rubik"
    family = "predictive"
    spatial_dims = (3,)

    def __init__(self, encoder: Encoder, n_perms: int = 50, mask_prob: float = 0.3, patch_fraction: float = 0.8,
                 jitter_fraction: float = 0.1, hidden_dim: int | None = None, seed: int = 0) -> None:
        """``n_perms``: ordering classes; ``mask_prob``: chance a cube is masked; cube geometry as in jigsaw."""
        super().__init__(encoder)
        if encoder.spatial_dims != 3:
            raise ValueError("Rubik's cube is a 3D task")
        self.n_cubes = GRID**3
        self.mask_prob = mask_prob
        self.patch_fraction = patch_fraction
        self.jitter_fraction = jitter_fraction
        perms, self.min_hamming = hamming_permutations(self.n_cubes, n_perms, seed)
        self.register_buffer("perms", perms)
        width = self.n_cubes * encoder.feature_dim
        hidden = hidden_dim or 4 * encoder.feature_dim
        self.order_head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_perms))
        self.rotation_head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, self.n_cubes * 3),
        )

    def scramble(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Shuffled, rotated cubes (B, 8, C, *cube), the permutation index (B,) and rotations (B, 8).

        Slot i holds cube ``perms[order, i]`` turned by ``rotate_cubes`` class ``rotations[:, i]``.
        """
        if x.ndim != 5:
            raise ValueError(f"Rubik's cube is a 3D task: expected (B, C, D, H, W), got shape {tuple(x.shape)}")
        batch = len(x)
        patch, jitter = grid_layout(x.shape[2:], GRID, self.patch_fraction, self.jitter_fraction)
        cubes = grid_patches(x, GRID, patch, jitter)
        order = torch.randint(len(self.perms), (batch,), device=x.device)
        cubes = shuffle_patches(cubes, self.perms, order)
        rotations = torch.randint(4, (batch, self.n_cubes), device=x.device)  # 0: none, 1-3: about axis 0-2
        rotated = rotate_cubes(cubes.flatten(0, 1), rotations.flatten())
        return rotated.reshape(cubes.shape), order, rotations

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        batch = len(x)
        cubes, order, rotations = self.scramble(x)
        cubes = mask_cubes(random_contrast(cubes.flatten(0, 1)), self.mask_prob)
        features = encoder(cubes).reshape(batch, self.n_cubes, -1)

        order_logits = self.order_head(features.flatten(1))
        rotation_logits = self.rotation_head(features.flatten(1)).reshape(batch * self.n_cubes, 3)
        rotations = rotations.flatten()
        rotation_targets = F.one_hot(rotations, 4)[:, 1:].float()
        loss = F.cross_entropy(order_logits, order) + F.binary_cross_entropy_with_logits(
            rotation_logits, rotation_targets
        )
        predicted = torch.where((rotation_logits > 0).any(1), rotation_logits.argmax(1) + 1, 0)
        logs = {
            "order_acc": (order_logits.argmax(1) == order).float().mean().detach(),
            "rotation_acc": (predicted == rotations).float().mean().detach(),
        }
        # probe features: mean over the cubes, which is independent of their order
        return TaskOutput(loss, features.mean(1), logs)
