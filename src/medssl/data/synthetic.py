"""Procedural "lesion in an organ" images, the embedded default dataset (2D and 3D, one code path).

Each image shows a dark field, a body ellipse(oid), a brighter organ with low-frequency texture, noise,
and one lesion inside the organ. The class is carried by the lesion's SHAPE and TEXTURE only:

* 0 "benign-like": round/oval lesion, smooth margin, homogeneous interior;
* 1 "malignant-like": lobulated/spiculated margin (radius modulated by random-direction harmonics and
  narrow spikes), heterogeneous interior.

Contrast amplitude, size and position are drawn from the same distributions for both classes, and the
lesion volume is normalised, so brightness says nothing about the label. Lesions are hypo-intense and
large enough (radius 0.25-0.38 of the half-width) that their margin is the dominant structure of the image:
that is what makes self-supervised features capture it, as they do lesions in real scans, while a CNN
trained from scratch on a dozen labels cannot.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medssl.data.conventions import stored
from medssl.data.dataset import SPLITS, ImageData, Split
from medssl.errors import MedsslError

CLASS_NAMES = ["benign-like", "malignant-like"]
_VOXELS_PER_CHUNK = 2**21  # bounds memory: intermediates hold a few times this many floats
_HARMONICS = 4  # lobulation: cos(pi * f * <u, w_k> + phi_k) with random unit directions w_k
_SPIKES = 4  # spiculation: exp(_SPIKE_SHARPNESS * (<u, w_j> - 1)), a narrow spike around w_j
_SPIKE_SHARPNESS = 24.0
_NORM_DIRECTIONS = 128  # directions used to normalise the irregular lesion's volume


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def _unit(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    v = torch.randn(shape, generator=gen)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _smooth_noise(gen: torch.Generator, b: int, dims: int, size: int, cells: int) -> torch.Tensor:
    """Zero-mean, unit-std noise with about ``cells`` blobs per axis, shaped (B, P)."""
    low = torch.randn((b, 1, *(cells,) * dims), generator=gen)
    mode = "bilinear" if dims == 2 else "trilinear"
    up = F.interpolate(low, size=(size,) * dims, mode=mode, align_corners=False).reshape(b, -1)
    return (up - up.mean(1, keepdim=True)) / up.std(1, keepdim=True).clamp_min(1e-6)


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over dim 1 (``Tensor.norm(dim=1)`` is an order of magnitude slower on CPU)."""
    return v.square().sum(1).sqrt()


def _ellipse_mask(x: torch.Tensor, centre: torch.Tensor, axes: torch.Tensor, rot: torch.Tensor,
                  sharpness: float) -> torch.Tensor:
    """Soft indicator of an ellipse(oid) at points x (d, P), for each image: (B, P)."""
    local = rot.transpose(1, 2) @ (x - centre[..., None]) / axes[..., None]
    return torch.sigmoid((1 - _norm(local)) * sharpness)


def _lesion_radius(u: torch.Tensor, dirs: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor,
                   amp: torch.Tensor, spike_dirs: torch.Tensor, spike_amp: torch.Tensor) -> torch.Tensor:
    """Relative margin radius along unit directions u (B, d, P); 1 + lobulation + spikes, shape (B, P)."""
    lobes = torch.cos(math.pi * freq[..., None] * (dirs @ u) + phase[..., None])
    spikes = torch.exp(_SPIKE_SHARPNESS * (spike_dirs @ u - 1))
    radius = 1 + (lobes * amp[..., None]).sum(1) + (spikes * spike_amp[..., None]).sum(1)
    return radius.clamp_min(0.2)


def _generate_chunk(gen: torch.Generator, labels: torch.Tensor, dims: int, size: int) -> np.ndarray:
    b, px = len(labels), 2.0 / size  # coordinates run over [-1, 1]; px = one pixel
    axis = torch.linspace(-1 + px / 2, 1 - px / 2, size)
    # Points are kept as (B, d, P): reductions over d then run on contiguous rows, which is much faster.
    x = torch.stack(torch.meshgrid(*(axis,) * dims, indexing="ij")).reshape(dims, -1)
    rot = torch.linalg.qr(torch.randn((3, b, dims, dims), generator=gen)).Q  # body, organ, lesion frames
    malignant = labels.float()[:, None]

    body = _ellipse_mask(x, _uniform(gen, (b, dims), -0.04, 0.04), _uniform(gen, (b, dims), 0.82, 0.95),
                         rot[0], sharpness=size)
    organ_centre = _uniform(gen, (b, dims), -0.12, 0.12)
    organ_axes = _uniform(gen, (b, dims), 0.55, 0.72)
    organ = _ellipse_mask(x, organ_centre, organ_axes, rot[1], sharpness=size / 2)
    tissue = _uniform(gen, (b, 1), 0.45, 0.55) + 0.05 * _smooth_noise(gen, b, dims, size, 4)
    image = 0.05 + body * (0.2 + 0.03 * _smooth_noise(gen, b, dims, size, 3)) + organ * (tissue - 0.2)

    # Lesion: centre inside the organ, volume of a sphere of radius r0, soft one-pixel margin.
    in_ball = _unit(gen, (b, dims)) * torch.rand((b, 1), generator=gen) ** (1 / dims)
    centre = organ_centre[..., None] + rot[1] @ (in_ball * organ_axes * 0.45)[..., None]
    r0 = _uniform(gen, (b, 1), 0.25, 0.38)
    aspect = torch.exp(_uniform(gen, (b, dims), -0.2, 0.2))
    aspect = aspect / aspect.prod(-1, keepdim=True) ** (1 / dims)
    shape_args = (
        _unit(gen, (b, _HARMONICS, dims)), _uniform(gen, (b, _HARMONICS), 1.5, 3.5),
        _uniform(gen, (b, _HARMONICS), 0, 2 * math.pi),
        malignant * _uniform(gen, (b, _HARMONICS), 0.06, 0.14),
        _unit(gen, (b, _SPIKES, dims)), malignant * _uniform(gen, (b, _SPIKES), 0.1, 0.35),
    )
    # Rescale the irregular margin so its mean volume matches the plain oval (no brightness cue).
    probe = _unit(gen, (1, _NORM_DIRECTIONS, dims)).transpose(1, 2).expand(b, -1, -1)
    r0 = r0 / _lesion_radius(probe, *shape_args).pow(dims).mean(1, keepdim=True) ** (1 / dims)
    offset = rot[2].transpose(1, 2) @ (x - centre)
    radius = r0 * _lesion_radius(offset / _norm(offset)[:, None].clamp_min(1e-6), *shape_args)
    lesion = torch.sigmoid((radius - _norm(offset / aspect[..., None])) / px / 0.6)

    heterogeneity = _uniform(gen, (b, 1), 0.0, 0.1) + malignant * _uniform(gen, (b, 1), 0.2, 0.4)
    texture = 1 + heterogeneity * _smooth_noise(gen, b, dims, size, max(4, size // 5))
    contrast = -_uniform(gen, (b, 1), 0.2, 0.35)  # hypo-intense, as most masses in ultrasound
    image = image + contrast * lesion * texture

    # Multiplicative speckle plus additive Gaussian noise.
    image = image * (1 + 0.05 * torch.randn(image.shape, generator=gen))
    image = image + _uniform(gen, (b, 1), 0.02, 0.04) * torch.randn(image.shape, generator=gen)
    image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.reshape(b, 1, *(size,) * dims).numpy()


def _check(spatial_dims: int, n: int, size: int, ratio: float, val_fraction: float,
           test_fraction: float) -> tuple[int, int]:
    if spatial_dims not in (2, 3):
        raise MedsslError(f"synthetic lesions: spatial_dims must be 2 or 3, got {spatial_dims}")
    if not 16 <= size <= 256:
        raise MedsslError(f"synthetic lesions: size must lie in 16..256, got {size}")
    if not ratio >= 1:
        raise MedsslError(f"synthetic lesions: ratio (benign per malignant) must be >= 1, got {ratio}")
    fractions_ok = 0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
    if not fractions_ok:
        raise MedsslError(f"synthetic lesions: val_fraction={val_fraction} and test_fraction={test_fraction}"
                          " must lie in [0, 1) and sum to less than 1")
    n_benign = round(n * ratio / (1 + ratio))
    for count in (n_benign, n - n_benign):
        n_val, n_test = round(count * val_fraction), round(count * test_fraction)
        if min(n_val, n_test, count - n_val - n_test) < 1:
            raise MedsslError(f"synthetic lesions: n={n} is too small to put at least one image of each class"
                              f" in each split (ratio={ratio}, val={val_fraction}, test={test_fraction})")
    return n_benign, n - n_benign


def make_lesions(spatial_dims: int, *, n: int = 2000, size: int = 32, ratio: float = 2.0, seed: int = 0,
                 val_fraction: float = 0.15, test_fraction: float = 0.25) -> ImageData:
    """Generate ``n`` lesion images (uint8, 1 channel, ``size`` per axis); class 0 ≈ ``ratio`` × class 1.

    Deterministic from ``seed``; splits are stratified by class.
    """
    n_benign, n_malignant = _check(spatial_dims, n, size, ratio, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.array([0, 1], dtype=np.int64), [n_benign, n_malignant]))
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _VOXELS_PER_CHUNK // size**spatial_dims)
    images = np.concatenate([
        _generate_chunk(gen, torch.from_numpy(labels[i:i + chunk]), spatial_dims, size)
        for i in range(0, n, chunk)
    ])

    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(len(idx) * val_fraction), round(len(idx) * test_fraction)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    splits = {}
    for s, chunks in parts.items():
        idx = np.sort(np.concatenate(chunks))
        splits[s] = Split(images[idx], labels[idx])
    return ImageData(f"synthetic:lesions{spatial_dims}d", splits, spatial_dims, 2, list(CLASS_NAMES), stored())
