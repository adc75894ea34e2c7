"""MedMNIST-format ``.npz`` files: ``{train,val,test}_{images,labels}``, 2D or 3D, grey or RGB."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medssl.data.conventions import stored
from medssl.data.dataset import SPLITS, ImageData, Split
from medssl.data.mapped import map_npz_member, read_npy_header
from medssl.errors import MedsslError

MAP_ABOVE_BYTES = 256 * 2**20  # larger uncompressed uint8 members are memory-mapped, not read into memory
MAX_CLASSES = 10_000  # labels are class indices; a larger one is a corrupt or foreign file
# what a damaged or hostile archive raises while numpy parses it (zip, zlib, .npy header, short reads)
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, KeyError,
                struct.error, UnicodeDecodeError, OverflowError, NotImplementedError)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_members(path: Path, keys: list[str], map_above: int = MAP_ABOVE_BYTES) -> None:
    """Read each member's .npy header, not its data: a member that declares more bytes than it holds, an
    object (pickle) dtype, or arrays larger than this machine's memory fail here, before any allocation.
    Members that will be memory-mapped (uncompressed uint8 above ``map_above`` bytes) do not count."""
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                info = archive.getinfo(f"{key}.npy")
                with archive.open(info) as member:
                    try:
                        shape, fortran_order, dtype = read_npy_header(member)
                    except ValueError as err:
                        raise MedsslError(f"{path}: member '{key}' has an unreadable .npy header ({err})") from None
                    header = member.tell()
                if dtype.hasobject:
                    raise MedsslError(f"{path}: member '{key}' holds Python objects (a pickle); refused")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size - header:
                    raise MedsslError(f"{path}: member '{key}' declares {declared:,} bytes of {shape} {dtype} "
                                      f"but holds {max(0, info.file_size - header):,} (truncated or forged)")
                mapped = (info.compress_type == zipfile.ZIP_STORED and info.file_size > map_above
                          and dtype == np.uint8 and not fortran_order)
                total += 0 if mapped else declared
    except MedsslError:
        raise
    except _READ_ERRORS as err:
        raise MedsslError(f"{path}: not a readable .npz file ({type(err).__name__})") from None
    if total > _memory_bytes():
        raise MedsslError(f"{path}: arrays of {total / 2**30:.1f} GiB do not fit this machine's memory")


def to_uint8(images: np.ndarray, source: str) -> np.ndarray:
    """uint8 stays as is; other dtypes are checked for NaN/Inf and min-max scaled to 0..255 as a whole."""
    if images.dtype == np.uint8:
        return images
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_) \
            or np.issubdtype(images.dtype, np.complexfloating):
        raise MedsslError(f"{source}: images have non-numeric or complex dtype {images.dtype}")
    if images.size == 0:
        return images.astype(np.uint8)
    images = images.astype(np.float32)
    if not np.isfinite(images).all():
        raise MedsslError(f"{source}: images contain NaN or Inf pixels (or values beyond float32)")
    lo, hi = float(images.min()), float(images.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.round((images - lo) * scale).astype(np.uint8)


def _channels_first(images: np.ndarray, spatial_dims: int | None, source: str) -> tuple[np.ndarray, int]:
    """(N,H,W) -> 2D grey; (N,H,W,C) with C<=4 -> 2D colour; (N,D,H,W) -> 3D; (N,D,H,W,C) -> 3D colour."""
    if images.ndim == 3:
        return images[:, None], 2
    if images.ndim == 4:
        colour_last = images.shape[-1] in (1, 3, 4) and spatial_dims != 3
        if colour_last:
            return np.moveaxis(images, -1, 1), 2
        return images[:, None], 3
    if images.ndim == 5:
        return np.moveaxis(images, -1, 1), 3
    raise MedsslError(
        f"{source}: images have {images.ndim} dimensions {images.shape}; expected (N,H,W), (N,H,W,C) or (N,D,H,W)"
    )


def _read_member(archive: np.lib.npyio.NpzFile, path: Path, key: str, map_above: int) -> np.ndarray:
    if archive.zip.getinfo(f"{key}.npy").file_size > map_above:
        try:
            mapped = map_npz_member(path, key)
        except ValueError as err:
            raise MedsslError(f"{path}: {err}") from None
        if mapped is not None and mapped.dtype == np.uint8:
            return mapped
    return archive[key]


def load_npz(path: str | Path, spatial_dims: int | None = None, map_above: int = MAP_ABOVE_BYTES) -> ImageData:
    """Load a MedMNIST-style npz. Labels may be (N,) or (N,1); multi-label (N,K>1) is rejected.
    Uncompressed uint8 image arrays larger than ``map_above`` bytes are memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise MedsslError(f"data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise MedsslError(f"{path}: not a readable .npz file ({type(err).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
        raise MedsslError(f"{path}: a single array, not an .npz archive of train/val/test images and labels")
    with archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive.files]
        if missing:
            raise MedsslError(
                f"{path}: missing keys {', '.join(missing)} (found {', '.join(archive.files) or 'none'}); "
                "expected train/val/test_images and train/val/test_labels"
            )
        check_members(path, [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")], map_above)
        splits: dict[str, Split] = {}
        dims: set[int] = set()
        for name in SPLITS:
            try:
                raw_images = _read_member(archive, path, f"{name}_images", map_above)
                raw_labels = archive[f"{name}_labels"]
            except _READ_ERRORS as err:
                raise MedsslError(f"{path}: cannot read split '{name}' ({type(err).__name__})") from None
            images, dim = _channels_first(to_uint8(raw_images, f"{path}:{name}_images"), spatial_dims, str(path))
            dims.add(dim)
            splits[name] = Split(images, _labels(raw_labels, len(images), f"{path}:{name}_labels"))
    if len(dims) != 1:
        raise MedsslError(f"{path}: splits disagree on dimensionality")
    shapes = {s.images.shape[1:] for s in splits.values()}
    if len(shapes) != 1:
        raise MedsslError(f"{path}: splits have different image shapes {sorted(shapes)}")
    if not any(len(s) for s in splits.values()):
        raise MedsslError(f"{path}: every split is empty")
    if any(0 in s.images.shape[1:] for s in splits.values()):
        raise MedsslError(f"{path}: images of shape {next(iter(shapes))} have no pixels")
    num_classes = int(max(int(s.labels.max()) for s in splits.values() if len(s)) + 1)
    return ImageData(path.name, splits, spatial_dims=dims.pop(), num_classes=num_classes,
                     class_names=[str(c) for c in range(num_classes)], conventions=stored())


def _labels(raw: np.ndarray, n: int, source: str) -> np.ndarray:
    labels = np.asarray(raw)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise MedsslError(f"{source}: labels shaped {labels.shape}; expected (N,) or (N,1) class indices")
    if len(labels) != n:
        raise MedsslError(f"{source}: {len(labels)} labels for {n} images")
    if not np.issubdtype(labels.dtype, np.number):
        raise MedsslError(f"{source}: labels must be integers, got {labels.dtype}")
    if labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.complexfloating):
        raise MedsslError(f"{source}: labels must be integers, got {labels.dtype}")
    if n and (not np.isfinite(labels).all() or (labels != np.round(labels)).any() or labels.min() < 0):
        raise MedsslError(f"{source}: labels must be non-negative integers")
    if n and labels.max() >= MAX_CLASSES:
        raise MedsslError(f"{source}: label {labels.max()} is beyond {MAX_CLASSES - 1}; labels are class indices")
    return labels.astype(np.int64)
