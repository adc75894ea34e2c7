"""Batched spatial views: random resized crop (+ rotation, flips) and discrete rot90 classes.

Every function takes ``x`` shaped (B, C, *spatial) with 2 or 3 spatial axes and derives the
dimensionality from ``x.ndim``. Random parameters are drawn per sample from torch's global RNG on
``x.device``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_resized_crop", "rotate_by_class", "rotation_classes"]

RotationClass = tuple[int, tuple[int, int] | None]


def _spatial_dims(x: Tensor) -> int:
    n = x.ndim - 2
    if n not in (2, 3):
        raise ValueError(f"expected a (B, C, H, W) or (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    return n


def _uniform(shape: Sequence[int], low: float, high: float, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(*shape, device=device)


def _plane_rotations(batch: int, n: int, max_degrees: float, device: torch.device) -> Tensor:
    """Per-sample (B, n, n) rotation: one Givens rotation per axis plane (1 in 2D, 3 in 3D), composed."""
    rot = torch.eye(n, device=device).expand(batch, n, n)
    limit = math.radians(max_degrees)
    for i, j in itertools.combinations(range(n), 2):
        angle = _uniform((batch,), -limit, limit, device)
        cos, sin = torch.cos(angle), torch.sin(angle)
        givens = torch.eye(n, device=device).repeat(batch, 1, 1)
        givens[:, i, i], givens[:, j, j] = cos, cos
        givens[:, i, j], givens[:, j, i] = -sin, sin
        rot = givens @ rot
    return rot


def random_resized_crop(
    x: Tensor,
    *,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    rotate_degrees: float = 0.0,
    flip: bool = True,
    size: Sequence[int] | None = None,
) -> Tensor:
    """Crop a random box per sample (optionally rotated and flipped) and resample it to ``size``.

    ``scale`` is the crop's fraction of the image area/volume. ``ratio`` bounds the extent of each
    spatial axis relative to the first one (in 2D exactly torchvision's width/height ratio). Extents
    are clamped to [area, 1] so the box stays inside the image; this only bites for extreme
    scale/ratio pairs and makes ``scale=(1, 1)`` the full image. ``rotate_degrees`` draws a uniform
    angle in ±degrees per axis plane (one in 2D, three composed in 3D) about the crop centre;
    ``flip`` mirrors each spatial axis with probability 1/2. Crop, rotation, flip and resize form one
    affine matrix per sample, applied with a single bilinear ``grid_sample``.

    Padding is ``border``: only rotation (or upsampling a near-full crop) samples outside the
    outermost pixel centres. Zeros would paint black wedges into the corners, a trivial cue
    whenever the crop lies inside bright tissue; replicating the edge mostly extends background.
    Bilinear interpolation of [0, 1] values with border padding stays in [0, 1].
    """
    n = _spatial_dims(x)
    batch, device = x.shape[0], x.device
    in_size = torch.tensor(x.shape[2:], dtype=torch.float32, device=device)
    out_size = tuple(x.shape[2:]) if size is None else tuple(int(s) for s in size)
    if len(out_size) != n:
        raise ValueError(f"size must have {n} entries for this input, got {out_size}")

    # Extents as fractions of each axis: product = area, log-ratio of axis i>0 to axis 0 uniform.
    area = _uniform((batch, 1), *scale, device)
    log_r = _uniform((batch, n - 1), math.log(ratio[0]), math.log(ratio[1]), device)
    log_f0 = (area.log() - log_r.sum(1, keepdim=True)) / n
    frac = torch.cat([log_f0, log_f0 + log_r], dim=1).exp()
    frac = torch.minimum(torch.maximum(frac, area), torch.ones_like(frac))
    # Keep the outermost sampling points within the outermost pixel centres (not just the image
    # edge), so an unrotated crop never interpolates with padding.
    out_cells = torch.tensor(out_size, dtype=torch.float32, device=device)
    slack = ((1 - 1 / in_size) - frac * (1 - 1 / out_cells)).clamp_min(0)
    centre = (2 * torch.rand(batch, n, device=device) - 1) * slack

    # Everything in tensor-axis order (D, H, W), in pixel units around the crop centre, then back to
    # normalised coordinates: A = diag(1/N) R diag(N) diag(frac) diag(flip).
    linear = torch.diag_embed(frac)
    if flip:
        signs = torch.where(torch.rand(batch, n, device=device) < 0.5, -1.0, 1.0)
        linear = linear * signs[:, None, :]
    if rotate_degrees > 0:
        rot = _plane_rotations(batch, n, rotate_degrees, device)
        linear = (rot * in_size[None, None, :] / in_size[None, :, None]) @ linear
    # affine_grid wants (x, y[, z]) = (W, H[, D]) order, i.e. reversed axes.
    theta = torch.cat([linear.flip(-1, -2), centre.flip(-1)[:, :, None]], dim=2).to(x.dtype)
    grid = F.affine_grid(theta, [batch, x.shape[1], *out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotation_classes(spatial_dims: int) -> list[RotationClass]:
    """Discrete rotations for the rotation pretext task as ``(k, dims)`` pairs for ``torch.rot90``.

    Class 0 is the identity ``(0, None)``; then k = 1, 2, 3 quarter turns in each axis plane. Plane
    dims are negative so they index the spatial axes of both batched and single tensors.
    2D gives 4 classes, 3D gives 10.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    planes = itertools.combinations(range(-spatial_dims, 0), 2)
    return [(0, None), *((k, plane) for plane, k in itertools.product(planes, (1, 2, 3)))]


def rotate_by_class(x: Tensor, classes: Tensor, spatial_dims: int) -> Tensor:
    """Rotate sample i by ``rotation_classes(spatial_dims)[classes[i]]`` (one rot90 per class group).

    Needs a square (2D) or cubic (3D) spatial extent so every rotation keeps the shape.
    """
    if x.ndim != spatial_dims + 2:
        raise ValueError(f"expected {spatial_dims} spatial axes, got shape {tuple(x.shape)}")
    if len(set(x.shape[2:])) != 1:
        raise ValueError(f"rotate_by_class needs equal spatial sizes, got {tuple(x.shape[2:])}")
    classes = torch.as_tensor(classes, device=x.device)
    if classes.shape != (x.shape[0],):
        raise ValueError(f"classes must have shape ({x.shape[0]},), got {tuple(classes.shape)}")
    table = rotation_classes(spatial_dims)
    if classes.numel() and not 0 <= int(classes.min()) <= int(classes.max()) < len(table):
        raise ValueError(f"classes must lie in [0, {len(table)}) for {spatial_dims}D rotations")
    out = x.clone()
    for index, (k, dims) in enumerate(table):
        if dims is None:
            continue
        mask = classes == index
        out[mask] = torch.rot90(x[mask], k, dims)
    return out
