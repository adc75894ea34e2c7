"""Unlabeled image files for pre-training: a folder (searched recursively) or a glob pattern.

PNG/JPG/TIFF/BMP/GIF (2D), NIfTI, NRRD/MHA (through ITK when installed) and DICOM; DICOM files are grouped
into series by ``sources.dicom``. Files of other types are listed as skipped, never silently dropped.
"""

from __future__ import annotations

import glob
from pathlib import Path

from medssl.data.items import Collection, Image, Item, Skipped
from medssl.data.sources import dicom

PLAIN_IMAGE = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
NIFTI = (".nii", ".nii.gz")
ITK = (".nrrd", ".nhdr", ".mha", ".mhd")
GLOB_CHARS = "*?["
# files a dataset folder holds beside its images: not images, not worth a "skipped" line
BOOKKEEPING = {"labels.csv", "dataset.json", "readme.md", "readme.txt", "license", "license.txt", ".ds_store"}


def reader_for(path: Path) -> str | None:
    """The reader of a file by its name ('dicom' for .dcm; other DICOM files are found by content)."""
    name = path.name.lower()
    if name.endswith(PLAIN_IMAGE):
        return "image"
    if name.endswith(NIFTI):
        return "nifti"
    if name.endswith(ITK):
        return "itk"
    if name.endswith(".dcm"):
        return "dicom"
    return None


def stem(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI, *PLAIN_IMAGE, *ITK, ".dcm"):
        if name.lower().endswith(suffix):
            return name[: len(name) - len(suffix)]
    return name


def collect(files: list[Path], root: Path | None) -> tuple[list[Item], list[Skipped]]:
    """Items of a list of files: single-file images in order, DICOM files grouped into series."""
    items: list[Item] = []
    skipped: list[Skipped] = []
    dicom_files: list[Path] = []
    for path in files:
        reader = reader_for(path)
        if reader is None and dicom.looks_like_dicom(path):
            reader = "dicom"
        if reader == "dicom":
            dicom_files.append(path)
        elif reader is not None:
            name = str(path.relative_to(root)) if root is not None else str(path)
            items.append(Item(name, Image((path,), reader)))
        elif path.name.lower() not in BOOKKEEPING:
            skipped.append(Skipped(str(path), "not an image file (unknown type)"))
    if dicom_files:
        series, bad = dicom.scan(dicom_files)
        items.extend(series)
        skipped.extend(bad)
    return items, skipped


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def scan_folder(spec: str) -> Collection:
    root = Path(spec)
    files = sorted(p for p in root.rglob("*") if p.is_file() and _visible(p, root))
    items, skipped = collect(files, root)
    return Collection(root.resolve().name, "folder", items, skipped)


def scan_glob(spec: str) -> Collection:
    """A glob pattern, or one file's path (which globs to itself)."""
    files = sorted(Path(p) for p in glob.glob(glob.escape(spec) if Path(spec).is_file() else spec, recursive=True)
                   if Path(p).is_file())
    items, skipped = collect(files, None)
    return Collection(spec, "glob", items, skipped)


def is_glob(spec: str) -> bool:
    return any(c in spec for c in GLOB_CHARS) and not Path(spec).exists()


def is_image_file(spec: str) -> bool:
    path = Path(spec)
    return path.is_file() and (reader_for(path) is not None or (path.suffix.lower() != ".npz"
                                                                and dicom.looks_like_dicom(path)))


def is_image_folder(spec: str) -> bool:
    path = Path(spec)
    return path.is_dir() and not (path / "labels.csv").is_file() and not (path / "dataset.json").is_file()
