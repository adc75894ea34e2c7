"""DICOM series: grouping by SeriesInstanceUID, slice order from positions, rescale, geometry, bad series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medssl.data.decode import decode
from medssl.data.info import describe_spec
from medssl.data.registry import scan
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from tests.conftest import shared_file
from tests.data.dicom_series import write_series


@pytest.fixture
def shared_dicom() -> Path:
    return shared_file("dicom")


def hu_volume(slices: int = 5, rows: int = 6, cols: int = 4) -> np.ndarray:
    """Distinct values per voxel (so any reordering or transposition shows), in HU."""
    return (np.arange(slices * rows * cols, dtype=np.float64).reshape(slices, rows, cols) * 4 - 1000)


def test_shuffled_file_names_and_instance_numbers_load_like_the_ordered_series(tmp_path: Path) -> None:
    values = hu_volume()
    write_series(tmp_path / "ordered", values, slope=2.0, intercept=-1024)
    # file names in another order than positions, InstanceNumber reversed: only the positions tell the order
    names = [f"z{n}.dcm" for n in (3, 0, 4, 1, 2)]
    write_series(tmp_path / "shuffled", values, slope=2.0, intercept=-1024, names=names,
                 instance_numbers=[5, 4, 3, 2, 1])
    ordered, shuffled = scan(str(tmp_path / "ordered")).items, scan(str(tmp_path / "shuffled")).items
    assert len(ordered) == len(shuffled) == 1
    a, b = decode(ordered[0].image), decode(shuffled[0].image)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.affine.numpy(), b.affine.numpy())
    # the array is (columns, rows, slices) and holds the HU values: RescaleSlope 2 / Intercept -1024 applied
    np.testing.assert_allclose(a.numpy()[0], np.transpose(values, (2, 1, 0)))


def test_oblique_series_affine_maps_voxels_to_their_patient_positions(tmp_path: Path) -> None:
    angle = np.deg2rad(20)
    orientation = (1, 0, 0, 0, np.cos(angle), -np.sin(angle))
    write_series(tmp_path, hu_volume(), spacing=(0.8, 0.7, 2.5), orientation=orientation, origin=(5, -3, 40))
    image = decode(scan(str(tmp_path)).items[0].image)
    affine = image.affine.numpy()
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), (0.7, 0.8, 2.5))  # slice step, not SliceThickness
    normal = np.cross([1, 0, 0], orientation[3:])
    for col, row, k in [(0, 0, 0), (3, 5, 4), (1, 2, 3)]:
        lps = np.array([5, -3, 40]) + col * 0.7 * np.array([1, 0, 0]) + row * 0.8 * np.array(orientation[3:]) \
            + k * 2.5 * normal
        ras = affine @ np.array([col, row, k, 1.0])
        np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-6)


def test_series_are_grouped_by_uid_not_by_folder(tmp_path: Path) -> None:
    write_series(tmp_path / "mixed", hu_volume(), names=[f"a{k}.dcm" for k in range(5)], series_uid="1.2.3.1")
    write_series(tmp_path / "mixed", hu_volume(4), names=[f"b{k}.dcm" for k in range(4)], series_uid="1.2.3.2",
                 modality="MR")
    paths = write_series(tmp_path / "split_a", hu_volume(6), series_uid="1.2.3.3")
    (tmp_path / "split_b").mkdir()
    for path in paths[3:]:  # half of one series in another folder
        shutil.move(path, tmp_path / "split_b" / path.name)
    collection = scan(str(tmp_path))
    slices = sorted(len(item.image.paths) for item in collection.items)
    assert slices == [4, 5, 6] and not collection.skipped
    assert sorted(item.modality for item in collection.items) == ["CT", "CT", "MR"]


def test_missing_duplicate_and_non_dicom_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    good = write_series(tmp_path / "good", hu_volume())
    gap = write_series(tmp_path / "gap", hu_volume(6))
    gap[2].unlink()
    duplicate = write_series(tmp_path / "dup", hu_volume())
    shutil.copy(duplicate[1], tmp_path / "dup" / "copy.dcm")
    (tmp_path / "good" / "broken.dcm").write_bytes(b"\0" * 200)
    (tmp_path / "notes.txt").write_text("not an image")
    collection = scan(str(tmp_path))
    assert [len(item.image.paths) for item in collection.items] == [len(good)]
    reasons = {Path(s.path).name if s.path.endswith((".dcm", ".txt")) else s.path: s.reason
               for s in collection.skipped}
    assert "not a readable DICOM file" in reasons["broken.dcm"]
    assert "unknown type" in reasons["notes.txt"]
    joined = "\n".join(s.reason for s in collection.skipped)
    assert "missing slice(s): 1 slice(s) absent" in joined and "duplicate slices" in joined
    text = describe_spec(str(tmp_path))
    assert "images: 1 readable, 4 skipped" in text and "missing slice" in text


def test_a_folder_of_only_unreadable_files_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"garbage")
    (tmp_path / "b.dcm").write_bytes(b"more garbage")
    with pytest.raises(MedsslError, match="no readable image found"):
        load_data(str(tmp_path))


def test_a_dicom_folder_is_an_unlabeled_volume_corpus(tmp_path: Path) -> None:
    for i in range(3):
        write_series(tmp_path / f"s{i}", hu_volume(4, 8, 8) + 100 * i)
    data = load_data(str(tmp_path))
    assert data.spatial_dims == 3 and data.splits["train"].images.shape == (3, 1, 8, 8, 4)
    assert (data.splits["train"].labels == -1).all()


@pytest.mark.real_data
def test_shared_dicom_corpus_has_four_series_one_ct_three_mr_with_their_spacings(shared_dicom: Path) -> None:
    text = describe_spec(str(shared_dicom))
    assert "images: 4 readable, 0 skipped" in text
    assert "modalities: CT 1, MR 3" in text
    assert "ct_series/No series description: CT 512x512x24 spacing 0.7617x0.7617x2.5 mm" in text
    # 6.5 mm between slices measured along the normal (the README's 6.48 is the z difference of an oblique stack)
    assert "mr_t1post_pgbm005/T1post: MR 260x320x24 spacing 0.6875x0.6875x6.5 mm" in text


@pytest.mark.real_data
def test_pgbm003_tumour_mask_overlays_its_t1post_voxel_for_voxel(shared_dicom: Path) -> None:
    study = shared_dicom / "mr_study_pgbm003"
    [t1] = scan(str(next(study.glob("13-T1post-*")))).items
    [mask] = scan(str(next(study.glob("5362-MaskTumor-*")))).items
    image, tumour = decode(t1.image), decode(mask.image)
    assert image.shape == tumour.shape == (1, 512, 512, 24)
    np.testing.assert_allclose(image.affine.numpy(), tumour.affine.numpy(), atol=1e-4)
    inside = tumour.numpy()[0] > 0
    assert inside.sum() == 2428
    # an enhancing tumour is brighter than the tissue around it, only where the mask really sits: a flipped
    # or transposed mask (what a wrong slice order or axis order gives) shows no such edge (ratios 1.00-1.10)
    values = image.numpy()[0]

    def edge_contrast(region: np.ndarray) -> float:
        ring = ndimage.binary_dilation(region, iterations=4) & ~region
        return float(values[region].mean() / values[ring].mean())

    assert edge_contrast(inside) > 1.25
    for wrong in (inside[:, :, ::-1], inside[:, ::-1], inside[::-1], np.transpose(inside, (1, 0, 2))):
        assert edge_contrast(wrong) < 1.15
