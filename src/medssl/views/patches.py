"""Batched grid patches ("tiles", "cubes") for patch-based pretext tasks, 2D or 3D with one code path.

An image (B, C, *spatial) is divided into a grid of equal cells (row-major, last axis fastest); one
patch is cropped from each chosen cell at a random offset inside it. Keeping patches smaller than
their cells leaves a gap between neighbours and the random offset ("jitter") varies it, so a
network cannot solve a layout task by matching edges or continuing lines across patch borders
(Doersch et al. 2015; Noroozi & Favaro 2016). Random draws use torch's global RNG on ``x.device``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["assemble_grid", "crop_patches", "grid_cells", "grid_layout", "grid_patch_starts", "grid_patches"]

IntOrSeq = int | Sequence[int]


def _per_axis(value: IntOrSeq, n: int, what: str) -> tuple[int, ...]:
    out = (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"{what} needs {n} entries, got {out}")
    return out


def _randint_below(high: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Uniform integers in [0, high) with per-axis ``high`` (broadcast over the last dim)."""
    drawn = (torch.rand(shape, device=high.device) * high).long()
    return torch.minimum(drawn, high - 1)  # float rounding can reach ``high`` itself


def grid_cells(grid: Sequence[int]) -> Tensor:
    """Integer coordinates of every grid cell, (prod(grid), n), in row-major (C) order."""
    return torch.tensor(list(itertools.product(*(range(g) for g in grid))), dtype=torch.long)


def grid_layout(
    spatial_size: Sequence[int],
    grid: IntOrSeq,
    patch_fraction: float,
    jitter_fraction: float = 0.0,
    min_gap: int = 1,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Patch sizes and jitters (per axis) for a grid over an image of ``spatial_size``.

    The patch side is ``round(patch_fraction * cell)`` (at least 1, at most the cell). The jitter,
    the largest shift of a patch from its cell's centre, is ``round(jitter_fraction * cell)`` but is
    reduced until neighbouring patches keep at least ``min_gap`` voxels between them (as far as the
    patch size allows).
    """
    n = len(spatial_size)
    grid = _per_axis(grid, n, "grid")
    patches, jitters = [], []
    for size, g in zip(spatial_size, grid, strict=True):
        cell = size // g
        if cell < 1:
            raise ValueError(f"a grid of {g} does not fit an axis of {size}")
        patch = min(cell, max(1, round(patch_fraction * cell)))
        slack = cell - patch
        patches.append(patch)
        jitters.append(max(0, min(round(jitter_fraction * cell), (slack - min_gap) // 2)))
    return tuple(patches), tuple(jitters)


def grid_patch_starts(
    batch: int,
    spatial_size: Sequence[int],
    grid: IntOrSeq,
    patch_size: IntOrSeq | None = None,
    jitter: IntOrSeq = 0,
    cells: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """First voxel of each patch, (B, K, n) long: K = prod(grid), or ``cells.shape[1]``.

    Cells are ``spatial // grid`` voxels; the grid block sits at a random per-sample offset inside the
    image when the size is not divisible. Each patch is centred in its cell (rounded down) and moved
    by an independent uniform integer shift in [-jitter, jitter] per axis, clipped to the cell.
    ``cells`` (B, K) picks cells by row-major index per sample; by default every cell, in order.
    """
    n = len(spatial_size)
    grid = _per_axis(grid, n, "grid")
    cell = tuple(int(s) // g for s, g in zip(spatial_size, grid, strict=True))
    if min(cell) < 1:
        raise ValueError(f"grid {grid} does not fit spatial size {tuple(spatial_size)}")
    patch = cell if patch_size is None else _per_axis(patch_size, n, "patch_size")
    if any(not 1 <= p <= c for p, c in zip(patch, cell, strict=True)):
        raise ValueError(f"patch size {patch} must lie in [1, cell {cell}]")
    jit = _per_axis(jitter, n, "jitter")
    slack = [c - p for c, p in zip(cell, patch, strict=True)]
    lo = [max(0, s // 2 - j) for s, j in zip(slack, jit, strict=True)]
    hi = [min(s, s // 2 + j) for s, j in zip(slack, jit, strict=True)]
    margin = [int(s) - c * g for s, c, g in zip(spatial_size, cell, grid, strict=True)]

    def tensor(values: Sequence[int]) -> Tensor:
        return torch.tensor(values, device=device)

    coords = grid_cells(grid).to(device)
    chosen = coords.expand(batch, -1, -1) if cells is None else coords[cells.to(device)]
    k = chosen.shape[1]
    block = _randint_below(tensor(margin) + 1, (batch, 1, n))
    shift = tensor(lo) + _randint_below(tensor(hi) - tensor(lo) + 1, (batch, k, n))
    return block + chosen * tensor(cell) + shift


def crop_patches(x: Tensor, starts: Tensor, size: IntOrSeq) -> Tensor:
    """Crop (B, K, C, *size) patches from x (B, C, *spatial) at ``starts`` (B, K, n), all at once."""
    n = x.ndim - 2
    if n not in (2, 3):
        raise ValueError(f"expected a (B, C, H, W) or (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    size = _per_axis(size, n, "size")
    batch, k = starts.shape[:2]
    channels_last = x.movedim(1, -1)  # (B, *spatial, C): advanced indexing then yields (B, K, *size, C)
    index: list[Tensor] = [torch.arange(batch, device=x.device).reshape(batch, 1, *([1] * n))]
    for axis in range(n):
        shape = [1] * n
        shape[axis] = size[axis]
        offsets = torch.arange(size[axis], device=x.device).reshape(1, 1, *shape)
        index.append(starts[:, :, axis].reshape(batch, k, *([1] * n)).to(x.device) + offsets)
    return channels_last[tuple(index)].movedim(-1, 2)


def grid_patches(
    x: Tensor,
    grid: IntOrSeq,
    patch_size: IntOrSeq | None = None,
    jitter: IntOrSeq = 0,
    cells: Tensor | None = None,
) -> Tensor:
    """Jittered grid patches of x (B, C, *spatial) as (B, K, C, *patch); see ``grid_patch_starts``."""
    n = x.ndim - 2
    starts = grid_patch_starts(x.shape[0], x.shape[2:], grid, patch_size, jitter, cells, x.device)
    grid = _per_axis(grid, n, "grid")
    size = tuple(s // g for s, g in zip(x.shape[2:], grid, strict=True)) if patch_size is None else patch_size
    return crop_patches(x, starts, size)


def assemble_grid(patches: Tensor, grid: IntOrSeq) -> Tensor:
    """Tile (B, prod(grid), C, *patch) patches, row-major, back into a (B, C, *(grid * patch)) image."""
    n = patches.ndim - 3
    grid = _per_axis(grid, n, "grid")
    if patches.shape[1] != math.prod(grid):
        raise ValueError(f"{patches.shape[1]} patches do not fill a grid of {grid}")
    batch, _, channels, *patch = patches.shape
    tiled = patches.reshape(batch, *grid, channels, *patch)
    # (B, g0.., C, p0..) -> (B, C, g0, p0, g1, p1, ...)
    order = [0, n + 1, *itertools.chain.from_iterable((1 + a, n + 2 + a) for a in range(n))]
    return tiled.permute(order).reshape(batch, channels, *(g * p for g, p in zip(grid, patch, strict=True)))
