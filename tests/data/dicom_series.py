"""Write DICOM series with pydicom for tests: known geometry, rescale, file names and slice order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


def write_series(folder: Path, values: np.ndarray, *, spacing: tuple[float, float, float] = (0.8, 0.7, 2.5),
                 orientation: Sequence[float] = (1, 0, 0, 0, 1, 0), origin: Sequence[float] = (-10, 20, 30),
                 slope: float = 1.0, intercept: float = 0.0, modality: str = "CT", names: Sequence[str] | None = None,
                 instance_numbers: Sequence[int] | None = None, series_uid: str | None = None,
                 patient: str = "P1") -> list[Path]:
    """``values`` (slices, rows, cols) in real units (HU); slice k lies at origin + k * spacing[2] * normal.
    Stored pixels are (values - intercept) / slope as uint16. Returns the written paths, slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    names = names or [f"slice{k:03d}.dcm" for k in range(len(values))]
    numbers = instance_numbers or list(range(1, len(values) + 1))
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    paths = []
    for k, pixels in enumerate(values):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.Modality, ds.PatientID = series_uid, modality, patient
        ds.SeriesDescription = "test series"
        ds.InstanceNumber = numbers[k]
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelSpacing = [spacing[0], spacing[1]]  # row spacing (between rows), column spacing
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin, float) + k * spacing[2] * normal]
        ds.SliceThickness = 99.0  # deliberately wrong: the spacing must come from the positions
        stored = np.rint((pixels - intercept) / slope)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
