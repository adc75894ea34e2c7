"""Models Genesis image corruptions (Zhou et al., MICCAI 2019 / MedIA 2021), batched, 2D or 3D.

A restoration network learns to undo these: a monotone non-linear intensity curve, local pixel
shuffling, in-painting and out-painting. Everything is vectorised over the batch with per-sample
random parameters; inputs are (B, C, *spatial) in [0, 1] and outputs stay in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_mask", "genesis_corrupt", "inpaint", "local_pixel_shuffle", "nonlinear_intensity", "outpaint"]

# Samples of the Bézier curve; the lookup is piecewise linear between them (Models Genesis: 100k).
_CURVE_SAMPLES = 256
# Random permutations drawn per call for local_pixel_shuffle; each block picks one at random.
_PERMUTATION_POOL = 1024
# Box counts and side fractions (of each axis) used by Models Genesis.
_INPAINT_BOXES, _INPAINT_SIZE = (1, 5), (1 / 6, 1 / 3)
_OUTPAINT_BOXES, _OUTPAINT_SIZE = (1, 1), (3 / 7, 4 / 7)


def _chosen(batch: int, p: float, device: torch.device) -> Tensor:
    return torch.rand(batch, device=device) < p


def _per_sample(mask: Tensor, ndim: int) -> Tensor:
    """(B,) mask -> (B, 1, ..., 1) to broadcast over a (B, C, *spatial) tensor."""
    return mask.reshape(-1, *([1] * (ndim - 1)))


def _resample_uniform(xs: Tensor, ys: Tensor, size: int) -> Tensor:
    """Row-wise ``np.interp(linspace(0, 1, size), xs, ys)`` for xs non-decreasing from 0 to 1.

    Bucket counts replace a binary search: the number of xs at or below grid point j is the
    cumulative count of xs whose bucket ceil(x * (size - 1)) is at most j.
    """
    batch, samples = xs.shape
    bucket = (xs * (size - 1)).ceil().long().clamp_(0, size - 1)
    below = torch.zeros(batch, size, dtype=torch.long, device=xs.device)
    hi = below.scatter_add_(1, bucket, torch.ones_like(bucket)).cumsum(1).clamp_(1, samples - 1)
    lo = hi - 1
    x0, x1 = xs.gather(1, lo), xs.gather(1, hi)
    f0, f1 = ys.gather(1, lo), ys.gather(1, hi)
    grid = torch.linspace(0, 1, size, device=xs.device, dtype=xs.dtype)
    w = ((grid - x0) / (x1 - x0).clamp_min(1e-12)).clamp_(0, 1)
    return f0 + w * (f1 - f0)


def _lookup(v: Tensor, table: Tensor) -> Tensor:
    """Row-wise linear interpolation in a table sampled on a uniform grid over [0, 1]; v (B, N)."""
    size = table.shape[1]
    pos = (v * (size - 1)).clamp_(0, size - 1)
    idx = pos.long().clamp_(max=size - 2)
    slope = table.diff(dim=1)
    return table.gather(1, idx).addcmul_(pos - idx, slope.gather(1, idx))


def nonlinear_intensity(x: Tensor, p: float = 0.9) -> Tensor:
    """Map intensities through a per-sample monotone cubic Bézier curve, with probability p.

    The curve runs from (0, 0) to (1, 1) with two uniformly random inner control points in [0, 1]^2,
    so x(t) and y(t) are both non-decreasing (Models Genesis sorts them; a running max here only
    guards against rounding). For half the samples the y values are reversed, giving a decreasing
    curve (intensity inversion). Lookup is piecewise linear on 256 curve samples.
    """
    batch, device = x.shape[0], x.device
    t = torch.linspace(0, 1, _CURVE_SAMPLES, device=device)
    inner = torch.rand(batch, 2, 2, device=device)  # two control points, each (x, y)
    curve = (
        (3 * (1 - t) ** 2 * t)[None, :, None] * inner[:, None, 0]
        + (3 * (1 - t) * t**2)[None, :, None] * inner[:, None, 1]
        + (t**3)[None, :, None]
    )
    xs = curve[..., 0].cummax(dim=1).values
    ys = curve[..., 1].cummax(dim=1).values
    inverted = torch.rand(batch, 1, device=device) < 0.5
    ys = torch.where(inverted, ys.flip(1), ys)
    # Resample the curve on a uniform grid so each voxel needs an O(1) lookup, not a binary search.
    table = _resample_uniform(xs, ys, _CURVE_SAMPLES)
    mapped = _lookup(x.reshape(batch, -1).float(), table).reshape(x.shape).to(x.dtype)
    return torch.where(_per_sample(_chosen(batch, p, device), x.ndim), mapped, x)


def local_pixel_shuffle(x: Tensor, p: float = 0.5, block: int = 4, fraction: float = 0.5) -> Tensor:
    """Shuffle voxels within blocks of a regular ``block``-sized grid, with probability p per sample.

    Each block of a chosen sample is shuffled with probability ``fraction`` (all channels by the
    same permutation). A remainder that doesn't fill a whole block along some axis stays unshuffled.
    Models Genesis instead shuffles 10k overlapping random-size windows; a fixed grid vectorises.
    Block permutations come from a fresh pool of 1024 random permutations per call (sorting one
    random key per voxel costs several times more and changes nothing for the pretext task).
    """
    batch, channels, *spatial = x.shape
    n = len(spatial)
    counts = [size // block for size in spatial]
    if min(counts) == 0:
        return x.clone()
    whole = all(c * block == size for c, size in zip(counts, spatial, strict=True))
    region = (slice(None), slice(None), *(slice(0, c * block) for c in counts))
    interleaved = [d for c in counts for d in (c, block)]
    to_blocks = [0, 1, *range(2, 2 + 2 * n, 2), *range(3, 3 + 2 * n, 2)]
    blocks = x[region].reshape(batch, channels, *interleaved).permute(to_blocks)
    blocks = blocks.reshape(batch, channels, math.prod(counts), block**n)

    pool = torch.rand(_PERMUTATION_POOL, block**n, device=x.device).argsort(dim=-1)
    perm = pool[torch.randint(_PERMUTATION_POOL, (batch, 1, blocks.shape[2]), device=x.device)]
    shuffled = blocks.gather(-1, perm.expand_as(blocks))
    chosen = torch.rand(batch, 1, blocks.shape[2], 1, device=x.device) < fraction
    chosen = chosen & _per_sample(_chosen(batch, p, x.device), 4)
    blocks = torch.where(chosen, shuffled, blocks)

    from_blocks = sorted(range(len(to_blocks)), key=to_blocks.__getitem__)
    blocks = blocks.reshape(batch, channels, *counts, *([block] * n)).permute(from_blocks)
    if whole:
        return blocks.reshape(x.shape)
    out = x.clone()
    out[region] = blocks.reshape(out[region].shape)
    return out


def box_mask(
    batch: int,
    spatial: tuple[int, ...] | torch.Size,
    *,
    n_boxes: tuple[int, int],
    size: tuple[float, float],
    device: torch.device | str | None = None,
) -> Tensor:
    """Union of random axis-aligned boxes per sample, as a (B, 1, *spatial) bool mask.

    Each sample gets U{n_boxes[0]..n_boxes[1]} boxes; every box side is a fraction U(size) of its
    axis (at least one voxel), placed uniformly inside the image.
    """
    n, k_max = len(spatial), n_boxes[1]
    dims = torch.tensor(tuple(spatial), device=device)
    frac = size[0] + (size[1] - size[0]) * torch.rand(batch, k_max, n, device=device)
    extent = torch.minimum((frac * dims).round().long().clamp_min(1), dims)
    start = (torch.rand(batch, k_max, n, device=device) * (dims - extent + 1)).long()
    n_active = torch.randint(n_boxes[0], k_max + 1, (batch, 1), device=device)
    active = torch.arange(k_max, device=device) < n_active
    # Per-axis 1D indicators (B, K, L); a box is their outer product, the union a sum over K.
    sides = []
    for axis, length in enumerate(spatial):
        coord = torch.arange(length, device=device)
        lo, hi = start[..., axis, None], (start + extent)[..., axis, None]
        sides.append(((coord >= lo) & (coord < hi)).float())
    front = sides[0] * active[..., None]
    for side in sides[1:-1]:
        front = (front[..., :, None] * side[..., None, :]).flatten(2)
    count = torch.einsum("bkp,bkq->bpq", front, sides[-1])
    return (count > 0.5).reshape(batch, 1, *spatial)


def _inpaint(x: Tensor, chosen: Tensor, n_boxes: tuple[int, int], size: tuple[float, float]) -> Tensor:
    mask = box_mask(x.shape[0], x.shape[2:], n_boxes=n_boxes, size=size, device=x.device)
    return torch.where(
        mask & _per_sample(chosen, x.ndim), torch.rand(x.shape, device=x.device, dtype=x.dtype), x
    )


def _outpaint(x: Tensor, chosen: Tensor, n_boxes: tuple[int, int], size: tuple[float, float]) -> Tensor:
    mask = box_mask(x.shape[0], x.shape[2:], n_boxes=n_boxes, size=size, device=x.device)
    return torch.where(
        ~mask & _per_sample(chosen, x.ndim), torch.rand(x.shape, device=x.device, dtype=x.dtype), x
    )


def inpaint(
    x: Tensor,
    p: float = 1.0,
    n_boxes: tuple[int, int] = _INPAINT_BOXES,
    size: tuple[float, float] = _INPAINT_SIZE,
) -> Tensor:
    """Fill 1-5 random boxes (sides 1/6-1/3 of each axis, as in Models Genesis) with U(0, 1) noise.

    ``p`` is the per-sample probability of painting at all; box count is uniform over ``n_boxes``.
    """
    return _inpaint(x, _chosen(x.shape[0], p, x.device), n_boxes, size)


def outpaint(
    x: Tensor,
    p: float = 1.0,
    n_boxes: tuple[int, int] = _OUTPAINT_BOXES,
    size: tuple[float, float] = _OUTPAINT_SIZE,
) -> Tensor:
    """Keep a random inner box (sides 3/7-4/7 of each axis) and fill everything outside with U(0, 1) noise.

    Models Genesis keeps up to five such boxes (their union); pass ``n_boxes=(1, 5)`` for that.
    """
    return _outpaint(x, _chosen(x.shape[0], p, x.device), n_boxes, size)


def genesis_corrupt(
    x: Tensor,
    *,
    shuffle_p: float = 0.5,
    nonlinear_p: float = 0.9,
    paint_p: float = 0.9,
    inpaint_share: float = 0.2,
) -> Tensor:
    """The Models Genesis corruption chain, each step decided per sample.

    Order and rates follow the reference implementation (MrGiovanni/ModelsGenesis ``config.py``):
    local pixel shuffle (``local_rate`` 0.5), non-linear intensity (``nonlinear_rate`` 0.9), then
    painting (``paint_rate`` 0.9), which is in-painting with ``inpaint_rate = 1 - outpaint_rate``
    = 0.2 and out-painting otherwise (0.8). Its random flips are a view, not a corruption, so they
    are left to the caller.
    """
    batch, device = x.shape[0], x.device
    x = local_pixel_shuffle(x, p=shuffle_p)
    x = nonlinear_intensity(x, p=nonlinear_p)
    paint = _chosen(batch, paint_p, device)
    use_inpaint = _chosen(batch, inpaint_share, device)
    x = _inpaint(x, paint & use_inpaint, _INPAINT_BOXES, _INPAINT_SIZE)
    return _outpaint(x, paint & ~use_inpaint, _OUTPAINT_BOXES, _OUTPAINT_SIZE)
