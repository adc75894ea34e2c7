"""A manifest CSV: one item per row, ``path[,label][,mask][,fov][,split][,patient_id][,modality]``.

A path (image, mask or fov) is an image file, a NIfTI volume or a DICOM series folder, relative to the
manifest's folder or absolute. Any naming works, so official layouts load as they are, e.g. DRIVE::

    path,mask,fov,split
    images/21_training.tif,1st_manual/21_manual1.gif,mask/21_training_mask.gif,train
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

from medssl.data.dataset import SPLITS
from medssl.data.items import Collection, Image, Item
from medssl.data.sources import dicom
from medssl.data.sources.files import collect, reader_for, stem
from medssl.errors import MedsslError

COLUMNS = ("path", "label", "mask", "fov", "split", "patient_id", "modality")


def detect(spec: str) -> bool:
    return spec.lower().endswith(".csv")


def _image(root: Path, text: str, where: str) -> tuple[Image, str | None]:
    """The image a manifest cell names, and its DICOM modality when it is a series."""
    if "\x00" in text:
        raise MedsslError(f"{where}: path {text!r} contains a NUL byte")
    path = Path(text) if Path(text).is_absolute() else root / text
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        items, skipped = collect(files, path)
        if len(items) != 1:
            reasons = "; ".join(s.reason for s in skipped[:2])
            raise MedsslError(f"{where}: folder {text!r} holds {len(items)} images or series, not one"
                              + (f" ({len(skipped)} skipped: {reasons})" if skipped else ""))
        return items[0].image, items[0].modality
    if not path.is_file():
        raise MedsslError(f"{where}: {text!r} not found")
    reader = reader_for(path) or ("dicom" if dicom.looks_like_dicom(path) else None)
    if reader is None:
        raise MedsslError(f"{where}: {text!r} is not an image file (PNG/JPG/TIFF/GIF/BMP, NIfTI, NRRD/MHA, DICOM)")
    if reader == "dicom":
        items, skipped = dicom.scan([path])
        if not items:
            raise MedsslError(f"{where}: {text!r}: {skipped[0].reason}")
        return items[0].image, items[0].modality
    return Image((path,), reader), None


def scan(spec: str) -> Collection:
    path = Path(spec)
    if not path.is_file():
        raise MedsslError(f"manifest not found: {spec}")
    try:
        reader = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
        columns = [c.strip() for c in reader.fieldnames or []]
    except UnicodeDecodeError:
        raise MedsslError(f"{path} is not UTF-8 text") from None
    if "path" not in columns:
        raise MedsslError(f"{path}: needs a header line with a 'path' column (and any of {', '.join(COLUMNS[1:])})")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise MedsslError(f"{path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    reader.fieldnames = columns
    root = path.resolve().parent
    items = []
    for row in reader:
        where = f"{path.name} line {reader.line_num}"
        cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not cells.get("path"):
            raise MedsslError(f"{where}: empty path")
        image, modality = _image(root, cells["path"], where)
        mask = _image(root, cells["mask"], where)[0] if cells.get("mask") else None
        fov = _image(root, cells["fov"], where)[0] if cells.get("fov") else None
        split = cells.get("split") or None
        if split is not None and split not in SPLITS:
            raise MedsslError(f"{where}: split {split!r} is not train/val/test")
        items.append(Item(cells["path"], image, cells.get("modality") or modality, cells.get("label") or None,
                          mask, fov, cells.get("patient_id") or None, split))
    if not items:
        raise MedsslError(f"{path}: no rows after the header")
    return Collection(path.stem, "manifest", _file_safe_names(items))


def _file_safe_names(items: list[Item]) -> list[Item]:
    """Names usable as file names (predictions are saved under them): the file stems, or when two rows share
    a stem, their paths with separators replaced."""
    stems = [stem(Path(item.name)) for item in items]
    if len(set(stems)) < len(stems):
        stems = [re.sub(r"[\\/:]+", "__", str(Path(item.name).with_suffix(""))).strip("_.") for item in items]
    return [replace(item, name=name) for item, name in zip(items, stems, strict=True)]
