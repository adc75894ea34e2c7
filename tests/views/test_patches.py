"""Grid patches: exact crops, cells and jitter bounds, reassembly; 2D and 3D through one code path."""

import itertools

import pytest
import torch

from medssl.views.patches import (
    assemble_grid,
    crop_patches,
    grid_cells,
    grid_layout,
    grid_patch_starts,
    grid_patches,
)


def index_coded(batch: int, size: tuple[int, ...]) -> torch.Tensor:
    """Every voxel holds its own row-major index (plus a per-sample offset), as float."""
    volume = torch.arange(torch.Size(size).numel(), dtype=torch.float32).reshape(1, 1, *size)
    return volume + 10_000 * torch.arange(batch, dtype=torch.float32).reshape(batch, 1, *([1] * len(size)))


def test_grid_cells_are_row_major():
    assert grid_cells((2, 3)).tolist() == [list(c) for c in itertools.product(range(2), range(3))]
    assert grid_cells((2, 2, 2)).shape == (8, 3)


def test_crop_patches_matches_slicing(spatial_dims, make_batch):
    x = make_batch(batch=3, channels=2)
    size = (5,) * spatial_dims
    starts = torch.randint(0, 6, (3, 4, spatial_dims))
    out = crop_patches(x, starts, size)
    assert out.shape == (3, 4, 2, *size)
    for b, k in itertools.product(range(3), range(4)):
        region = tuple(slice(int(s), int(s) + 5) for s in starts[b, k])
        assert torch.equal(out[b, k], x[(b, slice(None), *region)])


def test_whole_cells_reassemble_into_the_image(spatial_dims, make_batch):
    x = make_batch(batch=2, channels=1)  # 24^2 / 12^3: divisible by a grid of 3 / 2
    grid = 3 if spatial_dims == 2 else 2
    patches = grid_patches(x, grid)
    assert patches.shape == (2, grid**spatial_dims, 1, *((x.shape[-1] // grid,) * spatial_dims))
    assert torch.equal(assemble_grid(patches, grid), x)


@pytest.mark.parametrize("size", [28, 14, 64])
def test_layout_keeps_a_gap_between_jittered_neighbours(spatial_dims, size):
    spatial = (size,) * spatial_dims
    patch, jitter = grid_layout(spatial, 3, patch_fraction=0.7, jitter_fraction=0.1, min_gap=1)
    starts = grid_patch_starts(64, spatial, 3, patch, jitter)  # (B, 9|27, n)
    cell = size // 3
    coords = grid_cells((3,) * spatial_dims)
    offset_in_cell = starts - coords * cell
    margin = size - 3 * cell
    assert int(offset_in_cell.min()) >= 0 and int(offset_in_cell.max()) <= cell - patch[0] + margin
    assert int((starts + patch[0]).max()) <= size
    # neighbours along each axis: gap = next start - (this start + patch) >= 1 voxel
    for axis in range(spatial_dims):
        for i, j in itertools.combinations(range(len(coords)), 2):
            step = coords[j] - coords[i]
            if step[axis] == 1 and int(step.abs().sum()) == 1:
                gap = starts[:, j, axis] - starts[:, i, axis] - patch[axis]
                assert int(gap.min()) >= 1
    if jitter[0] > 0:  # jitter really moves patches, independently per patch
        assert len(torch.unique(offset_in_cell[..., 0])) > 1


def test_chosen_cells_are_the_ones_cropped(spatial_dims):
    size = (12,) * spatial_dims
    x = index_coded(4, size)
    cells = torch.randint(0, 3**spatial_dims, (4, 2))
    patches = grid_patches(x, 3, patch_size=4, jitter=0, cells=cells)  # cells of 4: whole cells, no jitter
    coords = grid_cells((3,) * spatial_dims)
    for b, k in itertools.product(range(4), range(2)):
        region = tuple(slice(4 * int(c), 4 * int(c) + 4) for c in coords[cells[b, k]])
        assert torch.equal(patches[b, k], x[(b, slice(None), *region)])


def test_bad_geometry_is_rejected():
    with pytest.raises(ValueError, match="patch size"):
        grid_patch_starts(1, (12, 12), 3, patch_size=5)
    with pytest.raises(ValueError, match="grid"):
        grid_patch_starts(1, (2, 2), 3)
