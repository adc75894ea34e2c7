"""DICOM files -> series (volumes): grouped by SeriesInstanceUID, never by folder or file name.

MONAI's ``PydicomReader`` groups a series by folder, orders slices by InstanceNumber and takes the z
spacing from the z coordinate alone (wrong for oblique series), so the scan and the slice order are done
here from the headers: slices ordered by ImagePositionPatient projected on the slice normal, the slice
step (not SliceThickness) as the third axis of the affine. Pixel values go through the modality LUT
(RescaleSlope/Intercept). A series with missing or duplicate slices, uneven steps, mixed geometry or
unreadable files is skipped with its reason.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from medssl.data.items import DicomSeries, Image, Item, Skipped

STEP_TOLERANCE = 0.05  # relative deviation of one slice step from the median step that counts as uneven
_HEADER_TAGS = ["SeriesInstanceUID", "Modality", "SeriesDescription", "ImagePositionPatient",
                "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames", "PatientID"]


def _pydicom():
    with warnings.catch_warnings():  # pydicom's optional GPU decoder plugin announces its absence
        warnings.simplefilter("ignore")
        import pydicom
    return pydicom


def looks_like_dicom(path: Path) -> bool:
    """The 'DICM' preamble marker (files without it are rarely DICOM in practice; .dcm files are tried anyway)."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as file:
            file.seek(128)
            return file.read(4) == b"DICM"
    except OSError:
        return False


def _series_geometry(headers: list[tuple[Path, object]]) -> tuple[list[Path], np.ndarray] | str:
    """Ordered slice files and the LPS affine of a multi-slice series, or the reason it cannot be a volume."""
    first = headers[0][1]
    try:
        orientation = np.array([float(v) for v in first.ImageOrientationPatient])
        pixel_spacing = [float(v) for v in first.PixelSpacing]
    except (AttributeError, TypeError, ValueError):
        return "no ImageOrientationPatient/PixelSpacing: slice geometry unknown"
    for path, ds in headers:
        try:
            same = (np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-4)
                    and np.allclose([float(v) for v in ds.PixelSpacing], pixel_spacing, atol=1e-4)
                    and (ds.Rows, ds.Columns) == (first.Rows, first.Columns))
            position = [float(v) for v in ds.ImagePositionPatient]
        except (AttributeError, TypeError, ValueError):
            return f"{path.name}: no ImagePositionPatient/ImageOrientationPatient"
        if not same or len(position) != 3:
            return f"{path.name}: orientation, pixel spacing or size differs from the other slices"
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth, positions = depth[order], positions[order]
    steps = np.diff(depth)
    if (steps < 1e-3).any():
        return f"duplicate slices: {int((steps < 1e-3).sum())} position(s) occur more than once"
    median = float(np.median(steps))
    if np.abs(steps - median).max() > STEP_TOLERANCE * median:
        gaps = steps[steps > (1 + STEP_TOLERANCE) * median]
        ratios = gaps / median
        if len(gaps) and np.allclose(ratios, np.round(ratios), atol=STEP_TOLERANCE) and (ratios >= 2).all():
            missing = int(np.round(ratios).sum() - len(ratios))
            return f"missing slice(s): {missing} slice(s) absent (a gap of {gaps.max():.3g} mm, step {median:.3g} mm)"
        return f"uneven slice spacing: steps from {steps.min():.3g} to {steps.max():.3g} mm"
    affine = np.eye(4)
    affine[:3, 0] = row_dir * pixel_spacing[1]  # array axis 0 runs along a row (column index)
    affine[:3, 1] = col_dir * pixel_spacing[0]
    affine[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)  # true step, tilt included
    affine[:3, 3] = positions[0]
    return [headers[i][0] for i in order], affine


def scan(files: list[Path]) -> tuple[list[Item], list[Skipped]]:
    """Series found among ``files`` (non-DICOM and unreadable files are skipped with a reason)."""
    pydicom = _pydicom()
    by_series: dict[str, list[tuple[Path, object]]] = defaultdict(list)
    skipped: list[Skipped] = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except Exception:
            skipped.append(Skipped(str(path), "not a readable DICOM file"))
            continue
        uid = getattr(ds, "SeriesInstanceUID", None)
        if not uid or "Rows" not in ds:
            skipped.append(Skipped(str(path), "DICOM file without an image (no SeriesInstanceUID or pixel rows)"))
            continue
        by_series[str(uid)].append((path, ds))
    items = []
    for uid, headers in sorted(by_series.items(), key=lambda kv: str(kv[1][0][0])):
        headers.sort(key=lambda h: str(h[0]))
        first = headers[0][1]
        modality = str(getattr(first, "Modality", "") or "") or None
        description = str(getattr(first, "SeriesDescription", "") or "")
        where = str(headers[0][0].parent)
        label = f"series {uid} ({description or 'no description'}, {len(headers)} files in {where})"
        if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
            skipped.append(Skipped(label, "multi-frame DICOM is not supported"))
            continue
        name = f"{headers[0][0].parent.name}/{description or uid}"
        patient = str(getattr(first, "PatientID", "") or "") or None
        if len(headers) == 1:  # a single image (radiograph, one slice): 2D
            items.append(Item(name, Image((headers[0][0],), "dicom"), modality, patient_id=patient))
            continue
        geometry = _series_geometry(headers)
        if isinstance(geometry, str):
            skipped.append(Skipped(label, geometry))
            continue
        paths, affine = geometry
        series = DicomSeries(uid, modality or "", description, tuple(map(tuple, affine.tolist())),
                             int(first.Rows), int(first.Columns))
        items.append(Item(name, Image(tuple(paths), "dicom", series), modality, patient_id=patient))
    return items, skipped


def _slice(path: Path) -> np.ndarray:
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)


def read(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """(array (C, *spatial) float32, RAS affine). A series is (1, columns, rows, slices) as its affine says;
    a single image is 2D (1, rows, columns) like the PNG reader, with an identity affine."""
    if image.series is None:
        pixels = _slice(image.paths[0])
        if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):  # colour (ultrasound): channels first
            return np.moveaxis(pixels[..., :3], -1, 0), np.eye(4)
        return pixels[None], np.eye(4)
    volume = np.stack([_slice(p).T for p in image.paths], axis=-1)  # (cols, rows, slices)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    return volume[None], lps_to_ras @ np.array(image.series.affine_lps)
