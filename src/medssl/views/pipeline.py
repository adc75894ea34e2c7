"""Compose batched views into a module, and the standard view recipes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import Tensor

from medssl.views.intensity import gaussian_blur, gaussian_noise, random_contrast, random_gamma
from medssl.views.spatial import random_resized_crop

__all__ = ["ViewPipeline", "contrastive_view", "light_view"]

View = Callable[[Tensor], Tensor]


class ViewPipeline(torch.nn.Module):
    """Apply batched views in order: ``forward(x) = ops[-1](...ops[0](x))``.

    Ops are plain callables on (B, C, *spatial) tensors (use ``functools.partial`` to bind
    parameters); ops that are modules are registered so ``.to()``/``state_dict`` reach them.
    """

    def __init__(self, ops: Iterable[View]) -> None:
        super().__init__()
        self.ops: list[View] = list(ops)
        for i, op in enumerate(self.ops):
            if isinstance(op, torch.nn.Module):
                self.add_module(f"op{i}", op)

    def forward(self, x: Tensor) -> Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def __len__(self) -> int:
        return len(self.ops)

    def extra_repr(self) -> str:
        return "\n".join(_describe(op) for op in self.ops)


def _describe(op: View) -> str:
    if isinstance(op, partial):
        args = [repr(a) for a in op.args] + [f"{k}={v!r}" for k, v in op.keywords.items()]
        return f"{getattr(op.func, '__name__', repr(op.func))}({', '.join(args)})"
    return getattr(op, "__name__", repr(op))


def contrastive_view(crop_scale: tuple[float, float] = (0.4, 1.0), rotate_degrees: float = 10.0,
                     blur_sigma: tuple[float, float] = (0.1, 1.0), blur_p: float = 0.3,
                     noise_std: tuple[float, float] = (0.0, 0.05), noise_p: float = 0.5,
                     size: Sequence[int] | None = None) -> ViewPipeline:
    """Strong view for contrastive / joint-embedding methods on grey 2D or 3D images.

    Random resized crop with small rotations per plane and random flips, then contrast/brightness, gamma,
    blur and noise in place of the colour jitter used for photographs. Blur is kept mild and rare on
    purpose: margins, spicules and fine texture carry the diagnosis in medical images, and a view recipe
    that erases them teaches the encoder to ignore them. ``size`` resamples every crop to that spatial size
    (multi-crop's small local views); by default crops keep the input's size.
    """
    return ViewPipeline(
        [
            partial(random_resized_crop, scale=crop_scale, rotate_degrees=rotate_degrees, flip=True, size=size),
            partial(random_contrast, scale=(0.7, 1.3), shift=(-0.1, 0.1), p=0.8),
            partial(random_gamma, gamma=(0.7, 1.5), p=0.5),
            partial(gaussian_blur, sigma=blur_sigma, p=blur_p),
            partial(gaussian_noise, std=noise_std, p=noise_p),
        ]
    )


def light_view() -> ViewPipeline:
    """Mild view for supervised fine-tuning: random flips and a crop of 80-100 % of the area."""
    return ViewPipeline([partial(random_resized_crop, scale=(0.8, 1.0), flip=True)])
