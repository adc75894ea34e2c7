"""Rotation prediction (Gidaris et al. 2018): classify which discrete rotation was applied.

2D: 4 rotations in the image plane. 3D: identity + 90/180/270 degrees in each of the 3 axis planes
(10 classes), as in the 3D rotation task of Taleb et al. 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import gaussian_noise, random_contrast, rotate_by_class, rotation_classes


@register
class Rotation(PretextTask):
    name = "rotation"
    family = "predictive"

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder)
        self.num_rotations = len(rotation_classes(encoder.spatial_dims))
        self.head = nn.Sequential(
            nn.Linear(encoder.feature_dim, encoder.feature_dim), nn.ReLU(inplace=True),
            nn.Linear(encoder.feature_dim, self.num_rotations),
        )

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        spatial_dims = x.ndim - 2
        targets = torch.randint(self.num_rotations, (len(x),), device=x.device)
        # flips are left out on purpose: a flip composed with a rotation equals another flip, which would
        # make the rotation label ambiguous
        rotated = rotate_by_class(gaussian_noise(random_contrast(x)), targets, spatial_dims)
        features = encoder(rotated)
        logits = self.head(features)
        accuracy = (logits.argmax(1) == targets).float().mean()
        return TaskOutput(F.cross_entropy(logits, targets), features, {"acc": accuracy.detach()})
