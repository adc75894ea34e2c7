"""load_folder: PNG/JPG/NIfTI/DICOM folders described by labels.csv, splits, and user errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medssl.data.folder import load_folder
from medssl.errors import MedsslError


def write_csv(root: Path, header: str, rows: list[str]) -> None:
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def grey(seed: int, shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    """Minimal uncompressed CT slice; stored values are HU + 1024 (RescaleIntercept -1024)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.PixelData = (pixels + 1024).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """6 grey PNGs, 2 classes, explicit split column."""
    splits = ["train", "train", "train", "train", "val", "test"]
    rows = []
    for i, split in enumerate(splits):
        write_png(tmp_path / "img" / f"{i}.png", grey(i))
        rows.append(f"img/{i}.png,{i % 2},{split}")
    write_csv(tmp_path, "path,label,split", rows)
    return tmp_path


def test_grey_png_folder_uses_split_column_and_keeps_pixels(png_folder: Path) -> None:
    data = load_folder(png_folder)
    assert data.spatial_dims == 2 and data.channels == 1 and data.spatial_shape == (12, 10)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    assert data.num_classes == 2 and data.class_names == ["0", "1"]
    assert data.splits["train"].images.dtype == np.uint8 and data.splits["train"].labels.dtype == np.int64
    np.testing.assert_array_equal(data.splits["train"].images[0, 0], grey(0))  # uint8 left unchanged
    np.testing.assert_array_equal(data.splits["test"].images[0, 0], grey(5))
    np.testing.assert_array_equal(data.splits["train"].labels, [0, 1, 0, 1])


def test_size_resizes_every_image_to_a_square(png_folder: Path) -> None:
    data = load_folder(png_folder, size=8)
    assert data.spatial_shape == (8, 8)


def test_rgb_jpg_keeps_three_channels(tmp_path: Path) -> None:
    rows = []
    for i in range(6):
        Image.fromarray(np.stack([grey(i)] * 3, axis=-1)).save(tmp_path / f"{i}.jpg")
        rows.append(f"{i}.jpg,0,{['train', 'val', 'test'][i % 3]}")
    write_csv(tmp_path, "path,label,split", rows)
    data = load_folder(tmp_path)
    assert data.channels == 3 and data.splits["train"].images.shape == (2, 3, 12, 10)


def test_nifti_volumes_with_ct_window_clip_and_scale_to_uint8(tmp_path: Path) -> None:
    volume = np.full((4, 5, 6), -300.0, dtype=np.float32)  # (-300 + 1000) / 1400 * 255 = 127.5 -> 128
    volume[0, 0, 0], volume[0, 0, 1] = -1000, 400
    volume[0, 0, 2], volume[0, 0, 3] = -3000, 2000  # outside the window: clipped
    for i in range(3):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii.gz")
    write_csv(tmp_path, "path,label,split", ["v0.nii.gz,0,train", "v1.nii.gz,0,val", "v2.nii.gz,0,test"])
    data = load_folder(tmp_path, window=(-1000, 400))
    image = data.splits["train"].images[0, 0]
    assert data.spatial_dims == 3 and data.spatial_shape == (4, 5, 6)
    assert image[0, 0, :4].tolist() == [0, 255, 0, 255]
    assert image[1, 1, 1] == 128


def test_nifti_without_window_is_min_max_scaled_per_image(tmp_path: Path) -> None:
    for i in range(3):
        volume = np.linspace(-50.0 * (i + 1), 70.0 * (i + 1), 4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii")
    write_csv(tmp_path, "path,label,split", ["v0.nii,0,train", "v1.nii,0,val", "v2.nii,0,test"])
    data = load_folder(tmp_path, size=2)
    for split in data.splits.values():
        assert split.images.shape == (1, 1, 2, 2, 2)
    full = load_folder(tmp_path)
    assert all(s.images.min() == 0 and s.images.max() == 255 for s in full.splits.values())


def test_dicom_slices_load_and_window_uses_hounsfield_units(tmp_path: Path) -> None:
    hu = np.full((8, 6), -1000, dtype=np.int16)
    hu[0, 0] = 400
    for i in range(3):
        write_dicom(tmp_path / f"s{i}.dcm", hu)
    write_csv(tmp_path, "path,label,split", ["s0.dcm,0,train", "s1.dcm,0,val", "s2.dcm,0,test"])
    data = load_folder(tmp_path, window=(-1000, 400))
    image = data.splits["train"].images[0, 0]
    assert data.spatial_dims == 2 and data.spatial_shape == (8, 6)
    assert image[0, 0] == 255 and image[1:].max() == 0


def test_patient_split_keeps_each_patient_in_one_split(tmp_path: Path) -> None:
    rows = []
    for p in range(20):
        for k in range(3):
            write_png(tmp_path / f"p{p}_{k}.png", grey(p * 3 + k, (6, 6)))
            rows.append(f"p{p}_{k}.png,{p % 2},P{p}")
    write_csv(tmp_path, "path,label,patient_id", rows)
    data = load_folder(tmp_path, seed=3)
    assert len(data.splits["train"]) + len(data.splits["val"]) + len(data.splits["test"]) == 60
    # Map each loaded image back to its patient through its (unique) pixels.
    patient_of = {grey(p * 3 + k, (6, 6)).tobytes(): p for p in range(20) for k in range(3)}
    seen: dict[int, str] = {}
    for name, split in data.splits.items():
        for image in split.images:
            patient = patient_of[image[0].tobytes()]
            assert seen.setdefault(patient, name) == name
    assert all(len(data.splits[s]) % 3 == 0 for s in ("train", "val", "test"))
    assert set(data.class_counts("train")) != {0}


def test_stratified_split_without_split_column_is_seeded_and_covers_every_class(tmp_path: Path) -> None:
    rows = []
    for i in range(30):
        write_png(tmp_path / f"{i}.png", grey(i, (4, 4)))
        rows.append(f"{i}.png,{i % 3}")
    write_csv(tmp_path, "path,label", rows)
    a, b = load_folder(tmp_path, seed=1), load_folder(tmp_path, seed=1)
    assert [len(a.splits[s]) for s in ("train", "val", "test")] == [19, 5, 6]
    assert a.class_counts("train") == [6, 7, 6]
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[s].images, b.splits[s].images)
    c = load_folder(tmp_path, seed=2)
    assert not np.array_equal(a.splits["test"].images, c.splits["test"].images)


def test_string_labels_map_to_sorted_class_indices(tmp_path: Path) -> None:
    names = ["normal", "covid", "pneumonia"]
    rows = []
    for i in range(6):
        write_png(tmp_path / f"{i}.png", grey(i))
        rows.append(f"{i}.png,{names[i % 3]},{'train' if i < 3 else ['val', 'test', 'test'][i - 3]}")
    write_csv(tmp_path, "path,label,split", rows)
    data = load_folder(tmp_path)
    assert data.class_names == ["covid", "normal", "pneumonia"] and data.num_classes == 3
    np.testing.assert_array_equal(data.splits["train"].labels, [1, 0, 2])


def _bad(root: Path, case: str) -> None:
    """Turn the valid png_folder into one with a single user mistake."""
    csv = root / "labels.csv"
    lines = csv.read_text().splitlines()
    if case == "missing_csv":
        csv.unlink()
    elif case == "empty_csv":
        csv.write_text("")
    elif case == "csv_not_utf8":
        csv.write_bytes("path,label\nimg/0.png,é\n".encode("latin-1"))
    elif case == "header_only":
        csv.write_text(lines[0] + "\n")
    elif case == "missing_label_column":
        csv.write_text("\n".join(line.rsplit(",", 2)[0] for line in lines))
    elif case == "missing_image":
        (root / "img" / "3.png").unlink()
    elif case == "corrupt_image":
        (root / "img" / "3.png").write_bytes(b"not a png at all")
    elif case == "unsupported_suffix":
        csv.write_text(csv.read_text().replace("img/3.png", "img/3.bmp"))
        (root / "img" / "3.bmp").write_bytes(b"BM")
    elif case == "unknown_split":
        csv.write_text(csv.read_text().replace("val", "validation"))
    elif case == "absolute_path":
        csv.write_text(csv.read_text().replace("img/3.png", str(root / "img" / "3.png")))
    elif case == "dotdot_path":
        write_png(root.parent / "outside.png", grey(0))
        csv.write_text(csv.read_text().replace("img/3.png", "../outside.png"))
    elif case == "symlink_outside":
        write_png(root.parent / "outside.png", grey(0))
        (root / "img" / "3.png").unlink()
        (root / "img" / "3.png").symlink_to(root.parent / "outside.png")
    elif case == "shape_mismatch":
        write_png(root / "img" / "3.png", grey(3, (9, 9)))
    elif case == "channel_mismatch":
        write_png(root / "img" / "3.png", np.stack([grey(3)] * 3, axis=-1))
    elif case == "dims_mismatch":
        nib.save(nib.Nifti1Image(np.zeros((12, 10, 4), np.float32), np.eye(4)), root / "img" / "3.nii")
        csv.write_text(csv.read_text().replace("img/3.png", "img/3.nii"))
    elif case == "nan_pixels":
        nib.save(nib.Nifti1Image(np.full((12, 10), np.nan, np.float32), np.eye(4)), root / "img" / "3.nii")
        csv.write_text(csv.read_text().replace("img/3.png", "img/3.nii"))
    elif case == "integer_labels_not_contiguous":
        csv.write_text(csv.read_text().replace(",1,", ",2,"))
    elif case == "class_missing_from_train":
        csv.write_text("\n".join([lines[0], *(line.replace(",1,train", ",0,train") for line in lines[1:])]))
    elif case == "empty_split":
        csv.write_text(csv.read_text().replace("test", "train"))


BAD_CASES = [
    ("missing_csv", "labels.csv"),
    ("empty_csv", "empty"),
    ("csv_not_utf8", "UTF-8"),
    ("header_only", "no rows"),
    ("missing_label_column", "label"),
    ("missing_image", "img/3.png"),
    ("corrupt_image", "img/3.png"),
    ("unsupported_suffix", "img/3.bmp"),
    ("unknown_split", "validation"),
    ("absolute_path", "relative"),
    ("dotdot_path", "outside"),
    ("symlink_outside", "outside"),
    ("shape_mismatch", "size="),
    ("channel_mismatch", "channel"),
    ("dims_mismatch", "img/3.nii"),
    ("nan_pixels", "img/3.nii"),
    ("integer_labels_not_contiguous", "0..1"),
    ("class_missing_from_train", "train"),
    ("empty_split", "test split is empty"),
]


@pytest.mark.parametrize(("case", "message"), BAD_CASES, ids=[c for c, _ in BAD_CASES])
def test_bad_input_raises_one_line_medssl_error(png_folder: Path, case: str, message: str) -> None:
    _bad(png_folder, case)
    with pytest.raises(MedsslError, match=message) as info:
        load_folder(png_folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"window": (400, -1000)}, {"val_fraction": 0.0},
                                    {"test_fraction": 0.6, "val_fraction": 0.5}])
def test_bad_options_raise_medssl_error(png_folder: Path, kwargs: dict) -> None:
    with pytest.raises(MedsslError):
        load_folder(png_folder, **kwargs)
