"""Geometry and intensity, with MONAI transforms: canonical orientation, resampling to a target spacing,
intensity normalisation per modality, optional crop to the foreground; then uint8 (C, *spatial).

Intensity options: ``ct:LOW,HIGH`` (a HU window for CT items and items of unknown modality, e.g. NIfTI;
items of another known modality, e.g. MR, get percentile scaling), ``mr`` (0.5-99.5 percentile scaling for
every item), ``range:LOW,HIGH`` (one explicit range for every item). Without one, 8-bit 2D images stay as
stored and everything else is min-max scaled per image; a corpus mixing CT and MR then has no common
intensity scale and training refuses it. Each item records the convention applied (``data.conventions``).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from medssl.data.conventions import item_intensity
from medssl.data.items import Collection, Item
from medssl.errors import MedsslError

if TYPE_CHECKING:  # MONAI is imported only when images are decoded: configs import this module
    from monai.data import MetaTensor

MR_PERCENTILES = (0.5, 99.5)
_INTENSITY = re.compile(r"^(ct|range):\s*(-?[\d.eE+-]+)\s*,\s*(-?[\d.eE+-]+)$|^mr$")


@dataclass(frozen=True)
class Preprocessing:
    spacing: tuple[float, ...] | None = None  # target voxel size (mm) of volumes; None keeps the native one
    intensity: str | None = None
    orientation: str = "RAS"  # canonical orientation of volumes
    crop_foreground: bool = False

    def __post_init__(self) -> None:
        from medssl.data.sampling import as_sizes

        object.__setattr__(self, "spacing", as_sizes(self.spacing, float, "spacing"))
        if self.spacing is not None and (len(self.spacing) not in (1, 3)
                                         or not all(0 < s < 1000 for s in self.spacing)):
            raise MedsslError(f"spacing must be X,Y,Z (or one value) in mm, each > 0, got {self.spacing}")
        if self.intensity is not None:
            intensity_range(self.intensity, "CT")  # validates

    def to_dict(self) -> dict:
        data = asdict(self)
        data["spacing"] = None if self.spacing is None else list(self.spacing)
        return data


def intensity_range(intensity: str, modality: str | None) -> tuple[float, float] | None:
    """The fixed (LOW, HIGH) an item of ``modality`` is scaled from, or None for percentile scaling."""
    match = _INTENSITY.match(intensity.strip().lower())
    if match is None:
        raise MedsslError(f"intensity must be ct:LOW,HIGH, mr or range:LOW,HIGH, got {intensity!r}")
    kind = match.group(1)
    if kind is None:
        return None
    try:
        low, high = float(match.group(2)), float(match.group(3))
    except ValueError:
        raise MedsslError(f"intensity {intensity!r}: LOW and HIGH must be numbers") from None
    if not low < high:
        raise MedsslError(f"intensity {intensity!r}: LOW must be below HIGH")
    if kind == "ct" and modality is not None and modality.upper() != "CT":  # unknown: the option says CT
        return None
    return low, high


def check_modalities(collection: Collection, pre: Preprocessing) -> None:
    """Mixed modalities have no common intensity scale: one line asking for an intensity option."""
    modalities = sorted(collection.modalities())
    if len(modalities) > 1 and pre.intensity is None:
        raise MedsslError(f"{collection.name} mixes modalities {' and '.join(modalities)} with no common intensity"
                          " scale: pass an intensity option (ct:-1000,400 windows CT and scales MR by percentiles;"
                          " mr; range:LOW,HIGH)")


def _to_255(image: MetaTensor, item: Item, pre: Preprocessing) -> tuple[MetaTensor, str]:
    """The image scaled to 0..255, and the intensity convention that did it (``data.conventions``)."""
    from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles

    if pre.intensity is not None:
        convention = item_intensity(pre.intensity, item.modality, kept_as_stored=False)
        window = intensity_range(pre.intensity, item.modality)
        if window is None:
            low, high = MR_PERCENTILES
            return ScaleIntensityRangePercentiles(low, high, 0.0, 255.0, clip=True)(image), convention
        return ScaleIntensityRange(window[0], window[1], 0.0, 255.0, clip=True)(image), convention
    values = image.as_tensor()
    lo, hi = float(values.min()), float(values.max())
    if item.image.reader == "image" and lo >= 0 and hi <= 255 and bool((values == values.round()).all()):
        return image, item_intensity(None, item.modality, kept_as_stored=True)  # an 8-bit picture keeps its values
    scaled = (image - lo) * (255.0 / (hi - lo)) if hi > lo else image * 0
    return scaled, item_intensity(None, item.modality, kept_as_stored=False)


@dataclass
class Prepared:
    """One preprocessed item: uint8 image (C, *spatial), uint8 mask/fov (1, *spatial) or None, geometry."""

    item: Item
    image: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    mask: np.ndarray | None = None
    fov: np.ndarray | None = None
    native_shape: tuple[int, ...] = ()
    native_spacing: tuple[float, ...] = ()
    native_range: tuple[float, float] = (0.0, 0.0)
    intensity: str | None = None  # the intensity convention applied (``data.conventions``); None: not recorded
    resampled_to: tuple[float, ...] | None = None  # the target spacing (mm) when the volume was resampled


def _same_grid(image: MetaTensor, other: MetaTensor) -> bool:
    from medssl.data.decode import spacing_of

    if image.shape[1:] != other.shape[1:]:
        return False
    scale = max(spacing_of(image.affine, image.ndim - 1))
    return bool(torch.allclose(image.affine.double(), other.affine.double(), atol=1e-3 * scale + 1e-4))


def prepare_item(item: Item, pre: Preprocessing) -> Prepared:
    """Decode and preprocess one item (image, and its mask and FOV on the same grid)."""
    from monai.transforms import CropForegroundd, Orientationd, Spacingd

    from medssl.data.decode import decode, spacing_of

    image = decode(item.image)
    dims = image.ndim - 1
    native = (tuple(image.shape[1:]), spacing_of(image.affine, dims),
              (float(image.min()), float(image.max())))
    data = {"image": image}
    for key in ("mask", "fov"):
        part = getattr(item, key)
        if part is None:
            continue
        decoded = decode(part)
        if not _same_grid(image, decoded):
            raise MedsslError(f"{item.name}: the {key}'s geometry differs from its image (shape"
                              f" {tuple(decoded.shape[1:])} vs {tuple(image.shape[1:])}, or another position,"
                              " orientation or spacing)")
        data[key] = decoded.max(dim=0, keepdim=True).values if decoded.shape[0] > 1 else decoded
    keys = list(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's notes on metadata and deprecated defaults
        if dims == 3:
            data = Orientationd(keys, axcodes=pre.orientation)(data)
            if pre.spacing is not None:
                pixdim = pre.spacing * 3 if len(pre.spacing) == 1 else pre.spacing
                modes = ["bilinear" if k == "image" else "nearest" for k in keys]
                data = Spacingd(keys, pixdim=pixdim, mode=modes)(data)
        data["image"], convention = _to_255(data["image"], item, pre)
        if pre.crop_foreground:
            data = CropForegroundd(keys, source_key="image", select_fn=lambda x: x > 0, allow_smaller=True)(data)
    out = data["image"]

    def as_uint8(x: MetaTensor) -> np.ndarray:
        return np.clip(np.rint(x.as_tensor().numpy()), 0, 255).astype(np.uint8)

    return Prepared(item, as_uint8(out), spacing_of(out.affine, dims), np.asarray(out.affine, dtype=np.float64),
                    as_uint8(data["mask"]) if "mask" in data else None,
                    as_uint8(data["fov"] > 0) if "fov" in data else None, *native, convention,
                    pre.spacing if dims == 3 else None)
