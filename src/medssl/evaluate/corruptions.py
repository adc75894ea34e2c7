"""A corruption suite for grey 2D and 3D images, batched and dimension-agnostic, severities 1-5.

Inputs are (B, C, *spatial) float tensors in [0, 1]; outputs keep shape, dtype and range. Random
corruptions draw from the ``generator`` they are given, so a seed fixes the result; with the same seed, the
random pattern (noise, bias-field shape) is shared across severities and only its strength grows. Severity
levels are chosen for 28-64 px medical images (ImageNet-C's scales are for 224 px natural photographs).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.errors import MedsslError

SEVERITIES = (1, 2, 3, 4, 5)

NOISE_STD = (0.04, 0.08, 0.12, 0.16, 0.20)
BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)  # pixels
CONTRAST_FACTOR = (0.75, 0.6, 0.45, 0.3, 0.2)  # deviations from the image mean are scaled by this
GAMMA = (1.3, 1.6, 2.0, 2.5, 3.0)
BIAS_MAGNITUDE = (0.15, 0.3, 0.45, 0.6, 0.8)  # max |log field| of the smooth multiplicative field
DOWNSAMPLE_FACTOR = (1.5, 2.0, 2.5, 3.0, 4.0)
GHOST_STRENGTH = (0.3, 0.45, 0.6, 0.75, 0.9)  # fraction of k-space line amplitude removed
GHOST_PERIOD = 4  # every 4th phase-encoding line: four ghosts, as from periodic (e.g. respiratory) motion
JPEG_QUALITY = (50, 30, 20, 12, 6)
_BIAS_ORDER = 3  # polynomial order of the bias field's log (TorchIO's RandomBiasField default)

CorruptionFn = Callable[[Tensor, int, torch.Generator], Tensor]


def _level(values: tuple, severity: int) -> float:
    if severity not in SEVERITIES:
        raise MedsslError(f"severity must be one of {SEVERITIES}, got {severity}")
    return values[severity - 1]


def _spatial(x: Tensor) -> int:
    if x.ndim not in (4, 5):
        raise MedsslError(f"expected (B, C, H, W) or (B, C, D, H, W) images, got shape {tuple(x.shape)}")
    return x.ndim - 2


def gaussian_noise(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Additive white Gaussian noise (electronic/thermal noise; low-dose CT)."""
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
    return (x + _level(NOISE_STD, severity) * noise).clamp(0, 1)


def _blur_axis(x: Tensor, kernel: Tensor, axis: int) -> Tensor:
    radius = (kernel.numel() - 1) // 2
    moved = x.movedim(axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    padded = F.pad(flat, (radius, radius), mode="replicate")
    return F.conv1d(padded, kernel.view(1, 1, -1)).reshape(shape).movedim(-1, axis)


def gaussian_blur(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Separable isotropic Gaussian blur (defocus, partial-volume smoothing), edges replicated."""
    sigma = _level(BLUR_SIGMA, severity)
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = x
    for axis in range(2, x.ndim):
        out = _blur_axis(out, kernel, axis)
    return out.clamp(0, 1)


def _per_image_mean(x: Tensor) -> Tensor:
    return x.flatten(1).mean(1).reshape(-1, *([1] * (x.ndim - 1)))


def contrast(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Lower contrast: deviations from each image's mean intensity shrink (scanner gain, windowing)."""
    mean = _per_image_mean(x)
    return ((x - mean) * _level(CONTRAST_FACTOR, severity) + mean).clamp(0, 1)


def gamma(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Gamma curve x**g with g > 1 (a different display/reconstruction intensity mapping)."""
    return x.clamp(0, 1).pow(_level(GAMMA, severity))


def _bias_field(x: Tensor, generator: torch.Generator) -> Tensor:
    """exp(polynomial of order 3 in the normalised coordinates) with random coefficients, its log scaled
    to a maximum |value| of 1 per image; raise to a power to set the magnitude."""
    dims = _spatial(x)
    batch, spatial = x.shape[0], x.shape[2:]
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")
    exponents = [e for e in np.ndindex(*(_BIAS_ORDER + 1,) * dims) if sum(e) <= _BIAS_ORDER]
    terms = []
    for powers in exponents:
        term = torch.ones(tuple(spatial), dtype=torch.float64)
        for grid, power in zip(grids, powers, strict=True):
            term = term * grid**power
        terms.append(term)
    basis = torch.stack(terms)  # (terms, *spatial)
    coefficients = torch.rand(batch, len(exponents), generator=generator, dtype=torch.float64) * 2 - 1
    log_field = torch.einsum("bt,t...->b...", coefficients, basis)
    log_field = log_field / log_field.flatten(1).abs().amax(1).clamp_min(1e-12).reshape(-1, *([1] * dims))
    return log_field.unsqueeze(1).to(x.device, x.dtype)


def bias_field(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Smooth multiplicative intensity inhomogeneity, as from MRI receive-coil sensitivity."""
    return (x * torch.exp(_level(BIAS_MAGNITUDE, severity) * _bias_field(x, generator))).clamp(0, 1)


def resolution(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Down-sample (area average) by a factor, then up-sample back (linear): a lower-resolution scanner."""
    dims = _spatial(x)
    spatial = x.shape[2:]
    factor = _level(DOWNSAMPLE_FACTOR, severity)
    small = [max(1, round(n / factor)) for n in spatial]
    low = F.adaptive_avg_pool2d(x, small) if dims == 2 else F.adaptive_avg_pool3d(x, small)
    mode = "bilinear" if dims == 2 else "trilinear"
    return F.interpolate(low, size=tuple(spatial), mode=mode, align_corners=False).clamp(0, 1)


def ghosting(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """MRI motion-like ghosting: every 4th phase-encoding line of k-space (last axis) loses amplitude, as
    periodic motion does, which leaves shifted copies of the image along that axis; the centre line is kept
    so overall intensity stays (TorchIO's RandomGhosting, with a fixed axis and ghost count)."""
    dims = _spatial(x)
    axes = tuple(range(2, 2 + dims))
    kspace = torch.fft.fftshift(torch.fft.fftn(x.double(), dim=axes), dim=axes)
    length = x.shape[-1]
    weights = torch.ones(length, dtype=torch.float64, device=x.device)
    weights[::GHOST_PERIOD] = 1 - _level(GHOST_STRENGTH, severity)
    weights[length // 2] = 1.0
    kspace = kspace * weights
    image = torch.fft.ifftn(torch.fft.ifftshift(kspace, dim=axes), dim=axes).real
    return image.to(x.dtype).clamp(0, 1)


def jpeg(x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """JPEG compression artefacts (2D only: images re-encoded in a lossy PACS/export step)."""
    from PIL import Image

    if _spatial(x) != 2:
        raise MedsslError("JPEG compression applies to 2D images only")
    quality = int(_level(JPEG_QUALITY, severity))
    pixels = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = np.empty_like(pixels)
    for index in np.ndindex(*pixels.shape[:2]):
        buffer = io.BytesIO()
        Image.fromarray(pixels[index], mode="L").save(buffer, format="JPEG", quality=quality)
        out[index] = np.asarray(Image.open(buffer).convert("L"))
    return torch.from_numpy(out).to(x.device, x.dtype).div_(255.0)


@dataclass(frozen=True)
class Corruption:
    name: str
    apply: CorruptionFn
    spatial_dims: tuple[int, ...] = (2, 3)


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian_noise", gaussian_noise),
    Corruption("gaussian_blur", gaussian_blur),
    Corruption("contrast", contrast),
    Corruption("gamma", gamma),
    Corruption("bias_field", bias_field),
    Corruption("resolution", resolution),
    Corruption("ghosting", ghosting),
    Corruption("jpeg", jpeg, spatial_dims=(2,)),
)}


def corruptions_for(spatial_dims: int) -> list[str]:
    """Names of the corruptions that apply to images with ``spatial_dims`` axes."""
    return [name for name, c in CORRUPTIONS.items() if spatial_dims in c.spatial_dims]


def corrupt(x: Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Apply the corruption ``name`` at ``severity`` (1-5) to a batch in [0, 1]."""
    if name not in CORRUPTIONS:
        raise MedsslError(f"unknown corruption '{name}'; choose from {', '.join(CORRUPTIONS)}")
    corruption = CORRUPTIONS[name]
    dims = _spatial(x)
    if dims not in corruption.spatial_dims:
        raise MedsslError(f"corruption '{name}' does not apply to {dims}D images")
    _level(SEVERITIES, severity)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return corruption.apply(x, severity, generator)
