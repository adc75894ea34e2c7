"""Barlow Twins (Zbontar et al. 2021): drive the cross-correlation of two views' embeddings to identity."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class BarlowTwins(PretextTask):
    """Barlow Twins with a 256-256-128 projector: the cross-correlation of a small batch has rank at most the
    batch size, so a narrow embedding keeps the loss well-conditioned (the paper's 8192 needs large batches)."""

    name = "barlow"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, projection_dim: int = 128, hidden_dim: int = 256,
                 lambda_param: float = 0.005, **view_args: Any) -> None:
        super().__init__(encoder)
        self.view = contrastive_view(**view_args)
        self.head = BarlowTwinsProjectionHead(encoder.feature_dim, hidden_dim, projection_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param, gather_distributed=True)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        z1, z2 = self.head(features).chunk(2)
        return TaskOutput(self.criterion(z1, z2), features[: len(x)])
