"""VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views' embeddings."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class VICReg(PretextTask):
    """VICReg with the paper's loss weights (25, 25, 1) and a narrow 256-256-128 expander for small batches."""

    name = "vicreg"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, projection_dim: int = 128, hidden_dim: int = 256,
                 lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 num_layers: int = 3, **view_args: Any) -> None:
        super().__init__(encoder)
        self.view = contrastive_view(**view_args)
        self.head = VICRegProjectionHead(encoder.feature_dim, hidden_dim, projection_dim, num_layers)
        self.criterion = VICRegLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param,
                                    gather_distributed=True)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        z1, z2 = self.head(features).chunk(2)
        return TaskOutput(self.criterion(z1, z2), features[: len(x)])
