"""BYOL (Grill et al. 2020): online network predicts an EMA target network's projection of the other view."""

from __future__ import annotations

import copy
from typing import Any

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import Tensor, nn

from medssl.methods.base import TaskOutput
from medssl.methods.contrastive.momentum import MomentumTask
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class BYOL(MomentumTask):
    """BYOL with a small MLP (256 hidden, 128 out) for the projector and predictor; EMA 0.99 -> 1 (cosine)."""

    name = "byol"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, momentum: float = 0.99, projection_dim: int = 128,
                 hidden_dim: int = 256, **view_args: Any) -> None:
        super().__init__(encoder)
        self.momentum = momentum
        self.view = contrastive_view(**view_args)
        self.projection = BYOLProjectionHead(encoder.feature_dim, hidden_dim, projection_dim)
        self.prediction = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
        # the target network: EMA copies, never in the optimizer; submodules so they move with .to()
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projection)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        p1, p2 = self.prediction(self.projection(features)).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projection(self.target_encoder(views)).chunk(2)
        # the paper's symmetric loss: mean over both directions of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)
        loss = 2.0 + self.criterion(p1, z2) + self.criterion(p2, z1)
        return TaskOutput(loss, features[: len(x)])

    def ema_pairs(self, encoder: Encoder) -> list[tuple[nn.Module, nn.Module]]:
        return [(encoder, self.target_encoder), (self.projection, self.target_projection)]
