from __future__ import annotations

import itertools

import pytest
import torch

from medssl.views.spatial import random_resized_crop, rotate_by_class, rotation_classes

from .conftest import MakeBatch, all_samples_differ, repeated


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_preserves_shape_dtype_device_and_unit_range(
    make_batch: MakeBatch, device: str, dtype: torch.dtype
) -> None:
    x = make_batch(batch=6, channels=2, dtype=dtype, device=device)
    out = random_resized_crop(x, rotate_degrees=10.0)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1


def test_crop_resamples_to_requested_size(make_batch: MakeBatch, spatial_dims: int) -> None:
    size = (10, 14, 6)[:spatial_dims]
    out = random_resized_crop(make_batch(batch=3), size=size)
    assert out.shape == (3, 1, *size)


def test_crop_of_full_scale_without_rotation_or_flip_is_identity(make_batch: MakeBatch) -> None:
    x = make_batch(batch=16)
    out = random_resized_crop(x, scale=(1.0, 1.0), flip=False)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_full_scale_flips_mirror_every_axis_independently(make_batch: MakeBatch, spatial_dims: int) -> None:
    x = repeated(make_batch(), 64)
    out = random_resized_crop(x, scale=(1.0, 1.0), flip=True)
    axes = range(2, 2 + spatial_dims)
    flips = [sub for r in range(spatial_dims + 1) for sub in itertools.combinations(axes, r)]
    seen = set()
    for sample in out:
        matches = [f for f in flips if torch.allclose(sample, x[0].flip([a - 1 for a in f]), atol=1e-5)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 2**spatial_dims


def test_crop_draws_independent_parameters_per_sample(make_batch: MakeBatch) -> None:
    out = random_resized_crop(repeated(make_batch(), 8), rotate_degrees=10.0)
    assert all_samples_differ(out)


def test_crop_is_reproducible_under_the_same_seed(make_batch: MakeBatch) -> None:
    x = make_batch()
    torch.manual_seed(3)
    first = random_resized_crop(x, rotate_degrees=10.0)
    torch.manual_seed(3)
    torch.testing.assert_close(random_resized_crop(x, rotate_degrees=10.0), first)


def test_small_crop_zooms_in(make_batch: MakeBatch) -> None:
    # A smooth ramp along the last axis: cropping 10 % of the area must narrow the value range.
    x = make_batch(batch=8)
    ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x).contiguous()
    out = random_resized_crop(ramp, scale=(0.1, 0.1), flip=False)
    span = out.amax(dim=tuple(range(1, out.ndim))) - out.amin(dim=tuple(range(1, out.ndim)))
    assert (span < 0.8).all()


def test_rotation_is_rigid_in_pixel_space_for_non_square_images(spatial_dims: int) -> None:
    # A centred Gaussian blob (round in pixels) is rotation invariant. Rotating in normalised
    # coordinates instead of pixels squashes it on this 1:2 grid (error > 0.12 inside r < 8).
    size = (20, 28, 40)[-spatial_dims:]
    grids = torch.meshgrid(*[torch.arange(s) - (s - 1) / 2 for s in size], indexing="ij")
    radius2 = sum(g.float() ** 2 for g in grids)
    x = torch.exp(-radius2 / (2 * 5.0**2)).expand(16, 1, *size).contiguous()
    out = random_resized_crop(x, scale=(1.0, 1.0), rotate_degrees=30.0, flip=False)
    assert (out - x).abs()[..., radius2 < 8**2].max() < 0.03


def test_rotation_changes_the_image(make_batch: MakeBatch) -> None:
    x = make_batch(batch=8)
    out = random_resized_crop(x, scale=(1.0, 1.0), rotate_degrees=20.0, flip=False)
    assert ((out - x).abs().flatten(1).mean(1) > 1e-3).all()


def test_rotation_classes_are_4_in_2d_and_10_in_3d() -> None:
    assert rotation_classes(2) == [(0, None), (1, (-2, -1)), (2, (-2, -1)), (3, (-2, -1))]
    classes = rotation_classes(3)
    assert len(classes) == 10 and classes[0] == (0, None)
    assert {dims for _, dims in classes[1:]} == {(-3, -2), (-3, -1), (-2, -1)}
    with pytest.raises(ValueError):
        rotation_classes(4)


def test_rotation_classes_give_pairwise_distinct_rotations_of_an_asymmetric_image(
    make_batch: MakeBatch, spatial_dims: int
) -> None:
    x = make_batch(batch=1)[0]
    rotated = [x if dims is None else torch.rot90(x, k, dims) for k, dims in rotation_classes(spatial_dims)]
    assert len(rotated) == (4 if spatial_dims == 2 else 10)
    for a, b in itertools.combinations(rotated, 2):
        assert not torch.equal(a, b)


def test_rotate_by_class_equals_direct_rot90_for_every_class(
    make_batch: MakeBatch, spatial_dims: int, device: str
) -> None:
    classes_list = rotation_classes(spatial_dims)
    x = make_batch(batch=3 * len(classes_list), channels=2, device=device)
    classes = torch.arange(len(x), device=device) % len(classes_list)
    out = rotate_by_class(x, classes, spatial_dims)
    assert out.shape == x.shape and out.device == x.device
    for i, label in enumerate(classes.tolist()):
        k, dims = classes_list[label]
        expected = x[i] if dims is None else torch.rot90(x[i], k, dims)
        assert torch.equal(out[i], expected)


def test_rotate_by_class_rejects_non_square_or_non_cubic_input(spatial_dims: int) -> None:
    x = torch.rand(2, 1, *(8, 8, 9)[-spatial_dims:])
    with pytest.raises(ValueError):
        rotate_by_class(x, torch.zeros(2, dtype=torch.long), spatial_dims)
    with pytest.raises(ValueError):
        rotate_by_class(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 3)


def test_rotate_by_class_rejects_unknown_classes(spatial_dims: int) -> None:
    x = torch.rand(2, 1, *(8,) * spatial_dims)
    with pytest.raises(ValueError):
        rotate_by_class(x, torch.tensor([0, len(rotation_classes(spatial_dims))]), spatial_dims)


def test_crop_rejects_wrong_dimensionality() -> None:
    with pytest.raises(ValueError):
        random_resized_crop(torch.rand(2, 1, 8))
    with pytest.raises(ValueError):
        random_resized_crop(torch.rand(2, 1, 8, 8), size=(8, 8, 8))


def test_crop_extents_multiply_to_the_drawn_area_within_the_aspect_ratio(spatial_dims: int) -> None:
    # Channel a holds a ramp along spatial axis a; linear interpolation keeps it linear, so each
    # channel's output span measures the crop's extent along that axis.
    size = (16, 20, 24)[-spatial_dims:]
    ramps = [
        ((torch.arange(s) + 0.5) / s).reshape([-1 if i == a else 1 for i in range(spatial_dims)])
        for a, s in enumerate(size)
    ]
    x = torch.stack([r.expand(size) for r in ramps]).expand(64, spatial_dims, *size).contiguous()
    ratio = (3 / 4, 4 / 3)
    out = random_resized_crop(x, scale=(0.25, 0.25), ratio=ratio, flip=False)
    span = torch.stack(
        [
            out[:, a].amax(dim=tuple(range(1, spatial_dims + 1)))
            - out[:, a].amin(dim=tuple(range(1, spatial_dims + 1)))
            for a in range(spatial_dims)
        ],
        dim=1,
    )
    extent = span / (1 - 1 / torch.tensor(size))
    torch.testing.assert_close(extent.prod(1), torch.full((64,), 0.25), atol=1e-4, rtol=0)
    relative = extent[:, 1:] / extent[:, :1]
    assert (relative >= ratio[0] - 1e-4).all() and (relative <= ratio[1] + 1e-4).all()
