"""Decode an item's files into a MONAI ``MetaTensor`` (C, *spatial) float32 whose affine is the geometry
(voxel -> RAS world mm). 2D images get an identity affine (pixel units)."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import torch
from monai.data import MetaTensor

from medssl.data.items import Image
from medssl.errors import MedsslError


class DecodeError(MedsslError):
    """A file that exists but cannot be decoded (corrupt, wrong format, unsupported)."""


def itk_available() -> bool:
    try:
        import itk  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _loader(reader: str):
    from monai.transforms import LoadImage

    from medssl.data.folder import image_reader

    if reader == "image":
        load = image_reader()
        return lambda path: (load(path, "PNG/JPG"), None)
    with warnings.catch_warnings():  # LoadImage builds every MONAI reader; the GPU DICOM one warns on CPU
        warnings.simplefilter("ignore")
        if reader == "nifti":
            from monai.data import NibabelReader

            monai_reader = NibabelReader()
        else:
            from monai.data import ITKReader

            monai_reader = ITKReader()
        load = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32, reader=monai_reader)

    def read(path):
        out = load(str(path))
        return np.asarray(out), np.asarray(out.affine, dtype=np.float64)
    return read


def _read_one(image: Image, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    path = image.paths[index]
    if image.reader == "dicom":
        from medssl.data.sources import dicom

        return dicom.read(image)
    if image.reader == "itk" and not itk_available():
        raise DecodeError(f"{path}: NRRD/MHA files need ITK (pip install itk-io)")
    return _loader(image.reader)(path)


def decode(image: Image) -> MetaTensor:
    """The image as float32 (C, *spatial) with its affine; a one-slice volume becomes a 2D image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if image.reader == "dicom":
                parts = [_read_one(image, 0)]
            else:
                parts = [_read_one(image, i) for i in range(len(image.paths))]
    except MedsslError:
        raise
    except Exception as err:
        raise DecodeError(f"{image.paths[0]}: cannot decode ({type(err).__name__}: {str(err)[:120]})") from None
    arrays = [np.asarray(a, dtype=np.float32) for a, _ in parts]
    affine = parts[0][1]
    mismatched = any(a.shape[1:] != arrays[0].shape[1:] for a in arrays) or any(
        p[1] is not None and not np.allclose(p[1], affine, atol=1e-3) for p in parts)
    if mismatched:  # one file per channel (nnU-Net): the same grid is required
        raise DecodeError(f"{image.paths[0]}: its channel files differ in size or geometry")
    array = np.concatenate(arrays)
    if array.ndim == 4 and array.shape[-1] == 1:  # a single-slice volume is a 2D image
        array, affine = array[..., 0], None
    if array.ndim not in (3, 4):
        raise DecodeError(f"{image.paths[0]}: expected a 2D or 3D image, got an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise DecodeError(f"{image.paths[0]}: image contains NaN or Inf values")
    if affine is None or array.ndim == 3:
        affine = np.eye(4)
    affine_tensor = torch.as_tensor(affine, dtype=torch.float64)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), affine=affine_tensor)


def spacing_of(affine: np.ndarray | torch.Tensor, spatial_dims: int) -> tuple[float, ...]:
    """Voxel size (mm) along each array axis: the lengths of the affine's columns."""
    matrix = np.asarray(affine, dtype=np.float64)[:spatial_dims, :spatial_dims]
    return tuple(float(v) for v in np.linalg.norm(matrix, axis=0))
