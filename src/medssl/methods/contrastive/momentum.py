"""Shared by methods with an exponential-moving-average (EMA) copy of the network (BYOL, MoCo)."""

from __future__ import annotations

from lightly.models.utils import update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medssl.methods.base import PretextTask
from medssl.models.encoder import Encoder


class MomentumTask(PretextTask):
    """After every optimizer step, each EMA copy moves towards its online module with a momentum that
    rises from ``self.momentum`` to 1 on a cosine schedule."""

    momentum: float

    def ema_pairs(self, encoder: Encoder) -> list[tuple[nn.Module, nn.Module]]:
        """(online module, EMA copy) pairs."""
        raise NotImplementedError

    def momentum_at(self, progress: float) -> float:
        return cosine_schedule(round(progress * 1000), 1001, self.momentum, 1.0)

    def on_step_end(self, encoder: Encoder, progress: float) -> None:
        m = self.momentum_at(progress)
        for online, target in self.ema_pairs(encoder):
            update_momentum(online, target, m)
