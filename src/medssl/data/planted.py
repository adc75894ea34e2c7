"""Planted lesions with known masks and boxes, 2D and 3D: the synthetic set of detection and anomaly detection.

Each image is a textured, noisy background; a fraction of the images carry 1-3 bright ellipsoidal lesions
(radius 7-16 % of the image side). The mask is the union of the lesions; each lesion's box is the tight
box of its voxels, in MONAI's ``StandardMode`` ([x0, y0, (z0,) x1, y1, (z1)], array axes in order, ends
exclusive), so boxes and masks describe the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

import numpy as np
import torch
import torch.nn.functional as F

from medssl.errors import MedsslError

SPLIT_FRACTIONS = {"train": 0.6, "val": 0.15, "test": 0.25}


@dataclass(frozen=True)
class PlantedSplit:
    """``images`` and ``masks`` uint8 (N, 1, *spatial) (masks 0/255); ``boxes[i]`` float32 (k, 2 * dims)."""

    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_lesion(self) -> np.ndarray:
        return np.array([len(b) > 0 for b in self.boxes])


def _lesions(gen: torch.Generator, grid: torch.Tensor, dims: int) -> tuple[torch.Tensor, list[list[int]]]:
    mask = torch.zeros(grid.shape[1:], dtype=torch.bool)
    boxes = []
    for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
        radii = (0.07 + 0.09 * torch.rand(dims, generator=gen)) * 2  # in [-1, 1] units: 7-16 % of the side
        centre = (torch.rand(dims, generator=gen) * 2 - 1) * (1 - radii - 0.05)
        shape = (-1,) + (1,) * dims
        lesion = (((grid - centre.reshape(shape)) / radii.reshape(shape)) ** 2).sum(0) <= 1
        if not lesion.any():
            continue
        where = torch.nonzero(lesion)
        boxes.append([*where.min(0).values.tolist(), *(where.max(0).values + 1).tolist()])
        mask |= lesion
    return mask, boxes


def make_planted(spatial_dims: int, *, n: int = 200, size: int = 32, seed: int = 0,
                 lesion_fraction: float = 0.5) -> dict[str, PlantedSplit]:
    """``n`` images (``size`` per axis), a ``lesion_fraction`` of them with lesions; 60/15/25 % splits.
    Deterministic from ``seed``."""
    if spatial_dims not in (2, 3):
        raise MedsslError(f"planted lesions: spatial_dims must be 2 or 3, got {spatial_dims}")
    if not 16 <= size <= 128:
        raise MedsslError(f"planted lesions: size must lie in 16..128, got {size}")
    if not 0.0 < lesion_fraction <= 1.0:
        raise MedsslError(f"planted lesions: lesion fraction must lie in (0, 1], got {lesion_fraction}")
    if n < 8:
        raise MedsslError(f"planted lesions: need n >= 8 images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    grid = torch.stack(torch.meshgrid(*(axis,) * spatial_dims, indexing="ij"))
    with_lesion = np.random.default_rng(seed).random(n) < lesion_fraction
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    images, masks, boxes = [], [], []
    for i in range(n):
        low = torch.randn((1, 1, *(4,) * spatial_dims), generator=gen)
        texture = F.interpolate(low, size=(size,) * spatial_dims, mode=mode, align_corners=False)[0, 0]
        mask, lesion_boxes = _lesions(gen, grid, spatial_dims) if with_lesion[i] else \
            (torch.zeros((size,) * spatial_dims, dtype=torch.bool), [])
        image = 0.4 + 0.08 * texture + 0.25 * mask + 0.06 * torch.randn(mask.shape, generator=gen)
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8)[None].numpy())
        masks.append((mask.to(torch.uint8) * 255)[None].numpy())
        boxes.append(np.asarray(lesion_boxes, np.float32).reshape(-1, 2 * spatial_dims))
    splits, start = {}, 0
    for name, fraction in SPLIT_FRACTIONS.items():
        stop = n if name == "test" else start + max(1, round(fraction * n))
        splits[name] = PlantedSplit(np.stack(images[start:stop]), np.stack(masks[start:stop]), boxes[start:stop],
                                    [f"planted{j:04d}" for j in range(start, stop)])
        start = stop
    return splits


def planted_from_spec(spec: str, kinds: dict[str, int], what: str, seed: int = 0
                      ) -> tuple[str, int, dict[str, PlantedSplit]]:
    """``synthetic:KIND[@SIZE][?n=N&seed=S]`` with KIND one of ``kinds`` (name -> spatial dims): the kind, its
    dims and the planted splits."""
    body, _, query = spec.removeprefix("synthetic:").partition("?")
    kind, _, size_text = body.partition("@")
    dims = kinds.get(kind)
    if dims is None:
        raise MedsslError(f"unknown synthetic {what} set '{kind}'; choose {' or '.join(kinds)} (optionally @SIZE)")
    if size_text and not size_text.isdigit():
        raise MedsslError(f"bad size in data spec '{spec}': '{size_text}' is not a whole number")
    options = {"seed": seed, "size": int(size_text) if size_text else (32 if dims == 2 else 24)}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("n", "seed") or not value.isdigit():
            raise MedsslError(f"bad option '{key}={value}' in '{spec}'; known: n=INT, seed=INT")
        options[key] = int(value)
    return kind, dims, make_planted(dims, **options)
