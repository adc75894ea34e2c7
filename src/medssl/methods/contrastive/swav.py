"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn cluster assignments between two views."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


@register
class SwAV(PretextTask):
    """Two-view SwAV without queue or multi-crop; Sinkhorn equipartitions each batch over the prototypes, so
    their number (16) stays at or below the batch size."""

    name = "swav"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, temperature: float = 0.1, num_prototypes: int = 16,
                 projection_dim: int = 128, hidden_dim: int = 256, sinkhorn_epsilon: float = 0.05,
                 **view_args: Any) -> None:
        super().__init__(encoder)
        self.view = contrastive_view(**view_args)
        self.head = SwaVProjectionHead(encoder.feature_dim, hidden_dim, projection_dim)
        self.prototypes = SwaVPrototypes(projection_dim, num_prototypes)
        self.criterion = SwaVLoss(temperature=temperature, sinkhorn_epsilon=sinkhorn_epsilon,
                                  sinkhorn_gather_distributed=True)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        with torch.no_grad():
            self.prototypes.normalize()  # prototypes live on the unit sphere, like the features
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        scores = self.prototypes(F.normalize(self.head(features), dim=1))
        s1, s2 = scores.chunk(2)
        return TaskOutput(self.criterion([s1, s2], []).squeeze(), features[: len(x)])

    def on_step_end(self, encoder: Encoder, progress: float) -> None:
        with torch.no_grad():
            self.prototypes.normalize()
