"""BYOL (Grill et al. 2020): online network predicts an EMA target network's projection of the other view."""

from __future__ import annotations

import copy

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class BYOL(PretextTask):
    """BYOL with a small MLP (256 hidden, 128 out) for the projector and predictor; EMA 0.99 -> 1 (cosine)."""

    name = "byol"
    family = "contrastive"

    def __init__(self, encoder: Encoder, momentum: float = 0.99, projection_dim: int = 128,
                 hidden_dim: int = 256) -> None:
        super().__init__(encoder)
        self.momentum = momentum
        self.view = contrastive_view()
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

    def momentum_at(self, progress: float) -> float:
        """Cosine schedule from ``momentum`` at the start to 1 at the end of training."""
        return cosine_schedule(round(progress * 1000), 1001, self.momentum, 1.0)

    def on_step_end(self, encoder: Encoder, progress: float) -> None:
        m = self.momentum_at(progress)
        update_momentum(encoder, self.target_encoder, m)
        update_momentum(self.projection, self.target_projection, m)
