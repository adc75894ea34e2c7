from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import pytest
import torch

from medssl.views.corruption import (
    box_mask,
    genesis_corrupt,
    inpaint,
    local_pixel_shuffle,
    nonlinear_intensity,
    outpaint,
)

from .conftest import MakeBatch, all_samples_differ, repeated

OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "nonlinear": partial(nonlinear_intensity, p=1.0),
    "shuffle": partial(local_pixel_shuffle, p=1.0),
    "inpaint": inpaint,
    "outpaint": outpaint,
    "genesis": genesis_corrupt,
}


def _bounding_box_mask(region: torch.Tensor) -> torch.Tensor:
    """The smallest axis-aligned box containing the True voxels of a (*spatial) mask."""
    box = torch.ones_like(region)
    for axis in range(region.ndim):
        other = tuple(a for a in range(region.ndim) if a != axis)
        hit = region.any(dim=other).nonzero().squeeze(1)
        coord = torch.arange(region.shape[axis]).reshape([-1 if a == axis else 1 for a in range(region.ndim)])
        box &= (coord >= hit.min()) & (coord <= hit.max())
    return box


def _box_sides(region: torch.Tensor) -> list[int]:
    box = _bounding_box_mask(region)
    return [
        int(box.any(dim=tuple(a for a in range(box.ndim) if a != axis)).sum()) for axis in range(box.ndim)
    ]


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corruptions_preserve_shape_dtype_device_and_unit_range(
    make_batch: MakeBatch, device: str, name: str, dtype: torch.dtype
) -> None:
    x = make_batch(batch=6, channels=2, dtype=dtype, device=device)
    out = OPS[name](x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", OPS)
def test_corruptions_draw_independent_parameters_per_sample(make_batch: MakeBatch, name: str) -> None:
    assert all_samples_differ(OPS[name](repeated(make_batch(), 6)))


@pytest.mark.parametrize("name", OPS)
def test_corruptions_are_reproducible_under_the_same_seed(make_batch: MakeBatch, name: str) -> None:
    x = make_batch()
    torch.manual_seed(11)
    first = OPS[name](x)
    torch.manual_seed(11)
    assert torch.equal(OPS[name](x), first)


def test_nonlinear_intensity_is_monotone_per_sample_and_inverts_about_half(make_batch: MakeBatch) -> None:
    # Sorted input values: every output row must be non-decreasing or non-increasing as a whole.
    x = make_batch(batch=200)
    ordered = x.flatten(1).sort(dim=1).values.reshape(x.shape)
    step = nonlinear_intensity(ordered, p=1.0).flatten(1).diff(dim=1)
    increasing = (step >= -1e-6).all(1)
    decreasing = (step <= 1e-6).all(1)
    assert (increasing | decreasing).all()
    assert 0.35 < decreasing.float().mean() < 0.65


def test_nonlinear_intensity_maps_the_endpoints_to_the_endpoints(spatial_dims: int) -> None:
    x = torch.zeros(64, 1, *(4,) * spatial_dims)
    x[:, :, 0] = 1.0
    out = nonlinear_intensity(x, p=1.0)
    low, high = out[:, 0, 1].flatten(1)[:, 0], out[:, 0, 0].flatten(1)[:, 0]
    assert torch.all(((low == 0) & (high == 1)) | ((low == 1) & (high == 0)))


def test_nonlinear_intensity_is_not_the_identity_or_a_plain_inversion(make_batch: MakeBatch) -> None:
    x = make_batch(batch=16)
    out = nonlinear_intensity(x, p=1.0)
    assert ((out - x).abs().flatten(1).amax(1) > 1e-3).all()
    assert ((out - (1 - x)).abs().flatten(1).amax(1) > 1e-3).all()


def _blocks(x: torch.Tensor, block: int) -> list[torch.Tensor]:
    """Every whole block of every sample as a flat tensor (test helper; loops are fine here)."""
    spatial = x.shape[2:]
    starts = itertools.product(*[range(0, s - s % block, block) for s in spatial])
    return [
        x[(slice(None), slice(None), *(slice(s, s + block) for s in start))].flatten(1) for start in starts
    ]


def test_local_shuffle_keeps_the_values_of_each_block(make_batch: MakeBatch) -> None:
    x = make_batch(batch=4, channels=2)
    out = local_pixel_shuffle(x, p=1.0, block=4, fraction=1.0)
    for before, after in zip(_blocks(x, 4), _blocks(out, 4), strict=True):
        torch.testing.assert_close(before.sort(1).values, after.sort(1).values, rtol=0, atol=0)
    assert not torch.equal(out, x)
    assert (out != x).float().mean() > 0.8


def test_local_shuffle_moves_all_channels_by_the_same_permutation(make_batch: MakeBatch) -> None:
    x = make_batch(batch=4)
    stacked = torch.cat([x, 1 - x], dim=1)
    out = local_pixel_shuffle(stacked, p=1.0, fraction=1.0)
    torch.testing.assert_close(out[:, 1], 1 - out[:, 0])


def test_local_shuffle_leaves_the_remainder_outside_whole_blocks_untouched(spatial_dims: int) -> None:
    x = torch.rand(3, 1, *(10, 11, 13)[:spatial_dims])
    out = local_pixel_shuffle(x, p=1.0, block=4, fraction=1.0)
    inner = (slice(None), slice(None), *(slice(0, s - s % 4) for s in x.shape[2:]))
    remainder = torch.ones_like(x, dtype=torch.bool)
    remainder[inner] = False
    assert torch.equal(out[remainder], x[remainder])
    for before, after in zip(_blocks(x, 4), _blocks(out, 4), strict=True):
        assert torch.equal(before.sort(1).values, after.sort(1).values)
    assert not torch.equal(out[inner], x[inner])


def test_local_shuffle_shuffles_about_the_requested_fraction_of_blocks(make_batch: MakeBatch) -> None:
    x = make_batch(batch=16)
    out = local_pixel_shuffle(x, p=1.0, block=4, fraction=0.3)
    moved = torch.stack([(a != b).any(1) for a, b in zip(_blocks(x, 4), _blocks(out, 4), strict=True)])
    assert 0.2 < moved.float().mean() < 0.4


def test_inpaint_changes_only_the_inside_of_one_box(make_batch: MakeBatch, spatial_dims: int) -> None:
    # Noise lies in [0, 1), so with the input at 2.0 "changed" is exactly the painted region.
    x = torch.full_like(make_batch(batch=16, size=(24,) * spatial_dims), 2.0)
    out = inpaint(x, n_boxes=(1, 1), size=(1 / 6, 1 / 3))
    for sample in (out != x)[:, 0]:
        assert sample.any()
        assert torch.equal(sample, _bounding_box_mask(sample))
        assert all(4 <= side <= 8 for side in _box_sides(sample))


def test_inpaint_paints_one_to_five_boxes(spatial_dims: int) -> None:
    x = torch.full((200, 1, *(24,) * spatial_dims), 2.0)
    painted = (inpaint(x, n_boxes=(1, 5)) != x).flatten(1).float().mean(1)
    single = (inpaint(x, n_boxes=(1, 1)) != x).flatten(1).float().mean(1)
    assert painted.mean() > 1.8 * single.mean()


def test_outpaint_changes_only_the_outside_of_one_inner_box(spatial_dims: int) -> None:
    x = torch.full((16, 1, *(28,) * spatial_dims), 2.0)
    out = outpaint(x)
    for sample in (out == x)[:, 0]:
        assert sample.any() and not sample.all()
        assert torch.equal(sample, _bounding_box_mask(sample))
        assert all(12 <= side <= 16 for side in _box_sides(sample))  # 3/7 and 4/7 of 28


def test_box_mask_draws_boxes_inside_the_image_with_the_requested_sides(spatial_dims: int) -> None:
    spatial = (20, 24, 28)[:spatial_dims]
    masks = box_mask(32, spatial, n_boxes=(1, 1), size=(0.25, 0.5))
    assert masks.shape == (32, 1, *spatial) and masks.dtype == torch.bool
    for mask in masks[:, 0]:
        assert torch.equal(mask, _bounding_box_mask(mask))
        for side, length in zip(_box_sides(mask), spatial, strict=True):
            assert round(0.25 * length) <= side <= round(0.5 * length)


@pytest.mark.parametrize("name", ["inpaint", "outpaint"])
def test_painting_with_zero_probability_is_identity(make_batch: MakeBatch, name: str) -> None:
    x = make_batch()
    assert torch.equal(OPS[name](x, p=0.0), x)


def test_genesis_corrupt_with_all_rates_zero_is_identity(make_batch: MakeBatch) -> None:
    x = make_batch()
    assert torch.equal(genesis_corrupt(x, shuffle_p=0, nonlinear_p=0, paint_p=0), x)


def test_genesis_corrupt_paints_with_the_models_genesis_split(spatial_dims: int) -> None:
    # Only painting on: out-painted samples change most voxels, in-painted ones a minority.
    x = torch.full((600, 1, *(14,) * spatial_dims), 2.0)
    out = genesis_corrupt(x, shuffle_p=0.0, nonlinear_p=0.0)
    changed = (out != x).flatten(1).float().mean(1)
    untouched, outpainted = (changed == 0).float().mean(), (changed > 0.5).float().mean()
    assert 0.06 < untouched < 0.14  # 1 - paint_p
    assert 0.64 < outpainted < 0.80  # paint_p * (1 - inpaint_share) = 0.72


def test_uniform_resampling_of_the_curve_matches_numpy_interp() -> None:
    np = pytest.importorskip("numpy")
    from medssl.views.corruption import _resample_uniform

    xs = torch.rand(4, 50, dtype=torch.float64).sort(1).values
    xs[:, 0], xs[:, -1], xs[:, 10:13] = 0.0, 1.0, xs[:, 10:11]  # endpoints and a run of duplicates
    ys = torch.rand(4, 50, dtype=torch.float64).sort(1).values
    expected = np.stack(
        [np.interp(np.linspace(0, 1, 64), a.numpy(), b.numpy()) for a, b in zip(xs, ys, strict=True)]
    )
    torch.testing.assert_close(_resample_uniform(xs, ys, 64), torch.from_numpy(expected))
