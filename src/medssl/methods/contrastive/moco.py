"""MoCo v2 (Chen et al. 2020): queries from the encoder, keys from its EMA copy, negatives from a queue.

The current batch's keys of the other images also serve as negatives (as in MoCo v3), so the loss is a
proper InfoNCE from the first step, before the queue has filled. On one device shuffle-BN changes nothing
(BatchNorm sees the whole key batch either way); the symmetric loss and the cosine momentum schedule
follow the lightly MoCo v2 recipe.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad
from lightly.utils import dist
from torch import Tensor, nn

from medssl.methods.base import TaskOutput
from medssl.methods.contrastive.momentum import MomentumTask
from medssl.methods.contrastive.queue import KeyQueue
from medssl.methods.registry import register
from medssl.models.encoder import Encoder
from medssl.views import contrastive_view


def info_nce(queries: Tensor, keys: Tensor, queued: Tensor, temperature: float) -> Tensor:
    """Cross-entropy of each query against its own key among all batch keys (every rank) and the queue."""
    batch_keys = torch.cat(dist.gather(keys.contiguous())) if dist.world_size() > 1 else keys
    logits = torch.cat([queries @ batch_keys.T, queries @ queued.T], dim=1) / temperature
    targets = torch.arange(len(queries), device=queries.device) + dist.rank() * len(queries)
    return F.cross_entropy(logits, targets)


@register
class MoCo(MomentumTask):
    """Queue of 256 keys by default: small medical datasets (a few hundred images) must not queue the same
    image's older keys as negatives many times over."""

    name = "moco"
    family = "contrastive"
    view_recipe = contrastive_view

    def __init__(self, encoder: Encoder, temperature: float = 0.2, queue_size: int = 256,
                 momentum: float = 0.99, projection_dim: int = 128, **view_args: Any) -> None:
        super().__init__(encoder)
        self.temperature = temperature
        self.momentum = momentum
        self.view = contrastive_view(**view_args)
        self.projection = MoCoProjectionHead(encoder.feature_dim, encoder.feature_dim, projection_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.key_encoder)
        deactivate_requires_grad(self.key_projection)
        self.queue = KeyQueue(queue_size, projection_dim)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        views = torch.cat([self.view(x), self.view(x)])
        features = encoder(views)
        q1, q2 = F.normalize(self.projection(features), dim=1).chunk(2)
        with torch.no_grad():
            k1, k2 = F.normalize(self.key_projection(self.key_encoder(views)), dim=1).chunk(2)
        queued = self.queue.negatives()
        loss = 0.5 * (info_nce(q1, k2, queued, self.temperature) + info_nce(q2, k1, queued, self.temperature))
        if self.training:
            self.queue.push(torch.cat([k1, k2]))
        return TaskOutput(loss, features[: len(x)])

    def ema_pairs(self, encoder: Encoder) -> list[tuple[nn.Module, nn.Module]]:
        return [(encoder, self.key_encoder), (self.projection, self.key_projection)]
