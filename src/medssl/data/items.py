"""The one data model of file-based sources: items (an image or volume, with what is known about it) and
the collection a source yields (items + every file or series it skipped, with the reason).

An item names its files; decoding (``data.decode``) turns it into a MONAI ``MetaTensor`` that carries the
geometry (affine: spacing, orientation, origin, in RAS world coordinates). Sources only scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# how an item's files are decoded
READERS = ("image", "nifti", "dicom", "itk")


@dataclass(frozen=True)
class Image:
    """Files making one image: one file per channel (nnU-Net), or one DICOM series (its slices, in order)."""

    paths: tuple[Path, ...]
    reader: str  # one of READERS
    # for a DICOM series: slice order, geometry and intensity read from the headers by the scan
    series: DicomSeries | None = None

    def key(self) -> str:
        return "|".join(str(p) for p in self.paths)


@dataclass(frozen=True)
class DicomSeries:
    uid: str
    modality: str
    description: str
    affine_lps: tuple[tuple[float, ...], ...]  # 4x4, voxel (col, row, slice) -> patient LPS mm
    rows: int
    columns: int


@dataclass(frozen=True)
class Item:
    """One example: an image with optional label, segmentation mask, field-of-view mask, patient, split."""

    name: str
    image: Image
    modality: str | None = None  # "CT", "MR", ... when the source knows it
    label: str | None = None
    mask: Image | None = None
    fov: Image | None = None
    patient_id: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Collection:
    """What a source found: its items, what it skipped and why, and a name for run records."""

    name: str
    kind: str  # the source that produced it (folder, glob, manifest, msd, ...)
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)
    class_names: list[str] | None = None  # label vocabulary when the source defines one (MSD labels)

    def modalities(self) -> set[str]:
        return {item.modality for item in self.items if item.modality}

    def files(self) -> list[Path]:
        """Every file the items read (for the cache key)."""
        out: list[Path] = []
        for item in self.items:
            for image in (item.image, item.mask, item.fov):
                if image is not None:
                    out.extend(image.paths)
        return out
