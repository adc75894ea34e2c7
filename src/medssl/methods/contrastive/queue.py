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
        self.keys: Tensor
        self.pointer: Tensor
        self.filled: Tensor
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def negatives(self) -> Tensor:
        """A copy of the stored keys, (n, dim) with n <= size: a copy, since ``push`` overwrites the buffer
        in place before the loss that used them is back-propagated."""
        return self.keys[: int(self.filled)].clone()

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Enqueue this step's keys from every rank, overwriting the oldest entries."""
        if dist.world_size() > 1:
            keys = torch.cat(dist.gather(keys.contiguous()))
        size = self.keys.shape[0]
        keys = keys[-size:].detach().to(self.keys.dtype)
        slots = (int(self.pointer) + torch.arange(len(keys), device=keys.device)) % size
        self.keys[slots] = keys
        self.pointer.fill_((int(self.pointer) + len(keys)) % size)
        self.filled.fill_(min(size, int(self.filled) + len(keys)))
