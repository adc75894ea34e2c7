"""Patches and slices of images of any size, as a virtual uint8 array the training loaders index like any
other: ``crops[indices]`` -> (len(indices), C, *patch).

Training splits draw a new random position on every access (from torch's generator, so a seeded and resumed
run draws the same patches); evaluation splits take the centre, so their metrics are deterministic. Images
smaller than the patch are zero-padded. Volumes may be memory-mapped: a crop reads only its own pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medssl.data.dataset import ImageData, Split
from medssl.data.mapped import release_pages
from medssl.errors import MedsslError

SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # array axes of a RAS-oriented volume
DEFAULT_PATCHES_PER_IMAGE = 8


@dataclass(frozen=True)
class Sampling:
    patch: tuple[int, ...] | None = None  # one value: the same size on every axis
    slices: str | None = None  # axial | coronal | sagittal: 2D slices of volumes
    patches_per_image: int = DEFAULT_PATCHES_PER_IMAGE  # random patches per image and training epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", as_sizes(self.patch, int, "patch"))
        if self.patch is not None and (not 1 <= len(self.patch) <= 3 or min(self.patch) < 4):
            raise MedsslError(f"patch must be 1 to 3 sizes of at least 4 voxels, got {self.patch}")
        if self.slices is not None and self.slices not in SLICE_AXES:
            raise MedsslError(f"slices must be one of {', '.join(SLICE_AXES)}, got {self.slices!r}")
        if self.patches_per_image < 1:
            raise MedsslError(f"patches per image must be >= 1, got {self.patches_per_image}")


def as_sizes(value: object, kind: type, what: str) -> tuple | None:
    """``64``, ``[64, 64, 32]`` or ``"64,64,32"`` (a YAML spec, a notebook, the CLI) as a tuple of ``kind``."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        return tuple(kind(v) for v in parts)
    except (TypeError, ValueError):
        raise MedsslError(f"{what} must be one number or X,Y,Z, got {value!r}") from None


def _fit(image: np.ndarray, patch: tuple[int, ...], rng: np.random.Generator | None) -> np.ndarray:
    """A (C, *patch) window of ``image``: random (``rng``) or centred, zero-padded where the image is smaller."""
    out = np.zeros((image.shape[0], *patch), dtype=image.dtype)
    source, target = [slice(None)], [slice(None)]
    for size, want in zip(image.shape[1:], patch, strict=True):
        if size >= want:
            start = int(rng.integers(0, size - want + 1)) if rng is not None else (size - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(None))
        else:
            offset = (want - size) // 2
            source.append(slice(None))
            target.append(slice(offset, offset + size))
    out[tuple(target)] = image[tuple(source)]
    return out


class Crops:
    """(N, C, *patch) virtual array: entry k is a crop of image ``image_of[k]`` (of its slice ``slice_of[k]``
    along ``axis`` when slicing volumes)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, images: list[np.ndarray], image_of: np.ndarray, patch: tuple[int, ...], *, random: bool,
                 axis: int | None = None, slice_of: np.ndarray | None = None) -> None:
        self.images, self.image_of, self.patch = images, np.asarray(image_of, np.int64), tuple(patch)
        self.random, self.axis = random, axis
        self.slice_of = None if slice_of is None else np.asarray(slice_of, np.int64)
        self.shape = (len(self.image_of), images[0].shape[0] if images else 1, *self.patch)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.image_of)

    def _entry(self, k: int, rng: np.random.Generator | None) -> np.ndarray:
        image = self.images[self.image_of[k]]
        if self.axis is not None:
            image = np.take(image, self.slice_of[k], axis=self.axis + 1)
        crop = _fit(image, self.patch, rng)
        release_pages(image)
        return crop

    def __getitem__(self, index) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()))) if self.random else None
        if isinstance(index, (int, np.integer)):
            return self._entry(int(index), rng)
        entries = np.arange(len(self))[index]
        if len(entries) == 0:
            return np.zeros((0, *self.shape[1:]), np.uint8)
        return np.stack([self._entry(int(k), rng) for k in entries])

    def subset(self, indices: np.ndarray) -> Crops:
        return Crops(self.images, self.image_of[indices], self.patch, random=self.random, axis=self.axis,
                     slice_of=None if self.slice_of is None else self.slice_of[indices])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # a silent conversion would freeze one draw of patches (e.g. np.concatenate of two splits' patches)
        raise MedsslError("patches are drawn per batch and cannot be turned into one array: pool a single split"
                          " (e.g. pre-train on the train split only)")


def make_crops(images: list[np.ndarray], sampling: Sampling, train: bool) -> Crops:
    """Patches (and/or slices) of ``images`` (each (C, *spatial)) as ``sampling`` asks."""
    if not images:
        raise MedsslError("no images to sample patches from")
    dims = images[0].ndim - 1
    axis = None
    if sampling.slices is not None:
        if dims != 3:
            raise MedsslError(f"slices ({sampling.slices}) need 3D volumes, the data is {dims}D")
        axis = SLICE_AXES[sampling.slices]
        dims = 2
    if sampling.patch is not None:
        patch = sampling.patch * dims if len(sampling.patch) == 1 else sampling.patch
        if len(patch) != dims:
            raise MedsslError(f"patch {'x'.join(map(str, patch))} has {len(patch)} sizes but the images"
                              f" {'(slices) ' if axis is not None else ''}are {dims}D")
    else:  # whole slices, padded to the largest
        planes = [tuple(s for a, s in enumerate(im.shape[1:]) if a != axis) for im in images]
        patch = tuple(int(v) for v in np.max(planes, axis=0))
    if axis is not None:
        counts = [im.shape[axis + 1] for im in images]
        image_of = np.repeat(np.arange(len(images)), counts)
        slice_of = np.concatenate([np.arange(c) for c in counts])
        return Crops(images, image_of, patch, random=train and sampling.patch is not None, axis=axis,
                     slice_of=slice_of)
    per_image = sampling.patches_per_image if train else 1
    return Crops(images, np.repeat(np.arange(len(images)), per_image), patch, random=train)


def sampler_for(sampling: Sampling | None, seed: int = 0):
    """``sampler(images, train)`` for ``assemble.to_image_data``, or None for whole images."""
    if sampling is None or (sampling.patch is None and sampling.slices is None):
        return None
    return lambda images, train: make_crops(images, sampling, train)


def apply_sampling(data: ImageData, sampling: Sampling | None) -> ImageData:
    """Patches/slices of an in-memory dataset (npz, labels.csv folder): each split re-drawn as crops."""
    sampler = sampler_for(sampling)
    if sampler is None:
        return data
    splits = {}
    for name, split in data.splits.items():
        crops = sampler(list(split.images), name == "train")
        splits[name] = Split(crops, split.labels[crops.image_of])
    return ImageData(data.name, splits, len(splits["train"].images.shape) - 2, data.num_classes, data.class_names,
                     data.conventions)
