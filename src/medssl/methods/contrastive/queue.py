"""A first-in-first-out queue of past keys (MoCo's dictionary).

Unlike lightly's memory bank it starts empty instead of random (random unit vectors are easy negatives
that make the loss rise as real keys replace them), hands out only the filled part, and keeps its
contents in persistent buffers so that a resumed run continues with the same negatives.
"""

from __future__ import annotations

import torch
from lightly.utils import dist
from torch import Tensor, nn


class KeyQueue(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.size = size
        self.keys: Tensor
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("counters", torch.zeros(2, dtype=torch.long))  # pointer, filled: saved with the model
        # host-side copies of the counters: reading the buffer on an accelerator would sync every step
        self._pointer = 0
        self._filled = 0
        self.register_load_state_dict_post_hook(lambda module, _: module._sync_counters_from_buffer())

    def _sync_counters_from_buffer(self) -> None:
        self._pointer, self._filled = (int(v) for v in self.counters.tolist())

    @property
    def filled(self) -> int:
        return self._filled

    def negatives(self) -> Tensor:
        """A copy of the stored keys, (n, dim) with n <= size: a copy, since ``push`` overwrites the buffer
        in place before the loss that used them is back-propagated."""
        return self.keys[: self._filled].clone()

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Enqueue this step's keys from every rank, overwriting the oldest entries."""
        if dist.world_size() > 1:
            keys = torch.cat(dist.gather(keys.contiguous()))
        keys = keys[-self.size :].detach().to(self.keys.dtype)
        slots = (self._pointer + torch.arange(len(keys), device=keys.device)) % self.size
        self.keys[slots] = keys
        self._pointer = (self._pointer + len(keys)) % self.size
        self._filled = min(self.size, self._filled + len(keys))
        self.counters[0] = self._pointer
        self.counters[1] = self._filled
