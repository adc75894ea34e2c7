from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from medssl.views.intensity import (
    _blur_axis_conv,
    _blur_axis_matmul,
    gaussian_blur,
    gaussian_noise,
    random_contrast,
    random_gamma,
)

from .conftest import MakeBatch, all_samples_differ, repeated

OPS: dict[str, Callable[..., torch.Tensor]] = {
    "contrast": random_contrast,
    "gamma": random_gamma,
    "noise": partial(gaussian_noise, std=(0.02, 0.05)),
    "blur": partial(gaussian_blur, sigma=(0.5, 1.5)),
}


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_intensity_ops_preserve_shape_dtype_device_and_unit_range(
    make_batch: MakeBatch, device: str, name: str, dtype: torch.dtype
) -> None:
    x = make_batch(batch=6, channels=2, dtype=dtype, device=device)
    out = OPS[name](x, p=1.0)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", OPS)
def test_intensity_ops_draw_independent_parameters_per_sample(make_batch: MakeBatch, name: str) -> None:
    x = repeated(make_batch(), 6)
    assert all_samples_differ(OPS[name](x, p=1.0))


@pytest.mark.parametrize("name", OPS)
def test_intensity_ops_are_reproducible_under_the_same_seed(make_batch: MakeBatch, name: str) -> None:
    x = make_batch()
    torch.manual_seed(5)
    first = OPS[name](x, p=0.5)
    torch.manual_seed(5)
    assert torch.equal(OPS[name](x, p=0.5), first)


@pytest.mark.parametrize("name", OPS)
def test_intensity_ops_with_zero_probability_leave_input_unchanged(make_batch: MakeBatch, name: str) -> None:
    x = make_batch()
    assert torch.equal(OPS[name](x, p=0.0), x)


@pytest.mark.parametrize("name", OPS)
def test_intensity_ops_apply_to_about_p_of_the_samples(
    make_batch: MakeBatch, spatial_dims: int, name: str
) -> None:
    x = make_batch(batch=400, size=(4,) * spatial_dims)
    changed = (OPS[name](x, p=0.5) != x).flatten(1).any(1).float().mean()
    assert 0.4 < changed < 0.6


def test_contrast_is_an_affine_map_per_sample(make_batch: MakeBatch) -> None:
    x = 0.3 + 0.4 * make_batch(batch=8)  # stays inside [0, 1] for any drawn scale/shift
    out = random_contrast(x, scale=(0.7, 1.3), shift=(-0.1, 0.1), p=1.0)
    for xi, yi in zip(x.flatten(1), out.flatten(1), strict=True):
        design = torch.stack([xi, torch.ones_like(xi)], 1)
        a, b = torch.linalg.lstsq(design, yi[:, None]).solution.squeeze(1)
        torch.testing.assert_close(a * xi + b, yi, atol=1e-5, rtol=0)
        assert 0.7 <= a <= 1.3 and -0.1 <= b <= 0.1


def test_gamma_raises_each_sample_to_one_power_in_range(make_batch: MakeBatch) -> None:
    x = 0.05 + 0.9 * make_batch(batch=8)
    out = random_gamma(x, gamma=(0.7, 1.5), p=1.0)
    exponents = out.log() / x.log()
    per_sample = exponents.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-4, rtol=0)
    assert ((per_sample >= 0.7 - 1e-4) & (per_sample <= 1.5 + 1e-4)).all()


def test_noise_std_is_drawn_per_sample_within_range(make_batch: MakeBatch, spatial_dims: int) -> None:
    x = torch.full_like(make_batch(batch=16, size=(32,) * spatial_dims), 0.5)
    residual_std = (gaussian_noise(x, std=(0.01, 0.05), p=1.0) - x).flatten(1).std(1)
    assert ((residual_std > 0.008) & (residual_std < 0.055)).all()
    assert residual_std.max() - residual_std.min() > 0.01


def test_blur_reduces_the_variance_of_white_noise(make_batch: MakeBatch) -> None:
    x = make_batch(batch=8)
    out = gaussian_blur(x, sigma=(1.0, 1.5), p=1.0)
    assert (out.flatten(1).var(1) < 0.5 * x.flatten(1).var(1)).all()


def test_blur_keeps_a_constant_image_constant_including_borders(make_batch: MakeBatch) -> None:
    x = torch.full_like(make_batch(), 0.7)
    torch.testing.assert_close(gaussian_blur(x, p=1.0), x)


def test_blur_keeps_mean_of_white_noise(make_batch: MakeBatch) -> None:
    x = make_batch(batch=8)
    out = gaussian_blur(x, sigma=(1.0, 1.5), p=1.0)
    torch.testing.assert_close(out.mean(), x.mean(), atol=0.02, rtol=0)


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_blur_matmul_and_depthwise_conv_paths_agree(axis: int) -> None:
    x = torch.rand(3, 2, 9, 10, 11, dtype=torch.float64)
    kernel = torch.rand(3, 7, dtype=torch.float64)
    torch.testing.assert_close(_blur_axis_matmul(x, kernel, axis), _blur_axis_conv(x, kernel, axis))


def test_blur_on_long_axes_uses_the_conv_path_and_still_blurs() -> None:
    x = torch.rand(2, 1, 80, 70)
    assert (gaussian_blur(x, sigma=(1.0, 1.5), p=1.0).flatten(1).var(1) < 0.5 * x.flatten(1).var(1)).all()
