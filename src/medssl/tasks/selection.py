"""Model selection for tasks that validate outside a val loader (whole-image inference at epoch end): keep the
weights of the best epoch, carry them through checkpoints, restore them; and the AdamW + warm-up cosine
optimizer every fine-tuning task uses."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from medssl.methods.base import warmup_cosine


def adamw_warmup_cosine(module: pl.LightningModule, lr: float, weight_decay: float) -> dict:
    """AdamW over the trainable parameters with a 5 % linear warm-up, then cosine decay, stepped per batch."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class KeepsBest:
    """Mixin for a LightningModule: ``record(score, summary, model)`` after each validation keeps the history
    and the best epoch's weights (ties keep the earlier epoch); the selection state rides in the checkpoint
    under ``checkpoint_key`` (without it a resumed run would forget the best epoch)."""

    checkpoint_key = "selection"
    current_epoch: int

    def init_selection(self, metric: str) -> None:
        self.selection_metric = metric
        self.history: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, Tensor]] | None = None  # (score, epoch, weights)

    def record(self, summary: dict[str, float], model: nn.Module) -> None:
        self.history.append({"epoch": self.current_epoch, **summary})
        score = summary[self.selection_metric]
        if self.best is None or score > self.best[0]:
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best = (score, self.current_epoch, weights)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        best = None if self.best is None else {"score": self.best[0], "epoch": self.best[1], "weights": self.best[2]}
        checkpoint[self.checkpoint_key] = {"history": self.history, "best": best}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get(self.checkpoint_key, {})
        self.history = list(state.get("history", []))
        best = state.get("best")
        self.best = None if best is None else (best["score"], best["epoch"], best["weights"])

    def restore_best(self, model: nn.Module) -> int:
        """Load the weights of the epoch with the best validation score into ``model``; returns that epoch."""
        if self.best is None:
            raise RuntimeError("no epoch finished")
        model.load_state_dict(self.best[2])
        return self.best[1]
