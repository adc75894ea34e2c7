"""SimCLR (Chen et al. 2020): two augmented views, projection head, NT-Xent loss (lightly)."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class SimCLR(PretextTask):
    name = "simclr"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, temperature: float = 0.2, projection_dim: int = 128, **view_args: Any) -> None:
        super().__init__(encoder)
        self.view = contrastive_view(**view_args)
        self.head = SimCLRProjectionHead(encoder.feature_dim, encoder.feature_dim, projection_dim)
        # gather_distributed: under DDP the negatives of every rank count, as in the paper's global batch
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        z1, z2 = self.head(features).chunk(2)
        return TaskOutput(self.criterion(z1, z2), features[: len(x)])
