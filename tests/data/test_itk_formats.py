"""NRRD and MetaImage (MHA/MHD) volumes through MONAI's ITK reader: the same physical volume written as NIfTI
(RAS affine) and by ITK (LPS direction cosines) decodes to the same voxels and the same RAS geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medssl.data import decode as decode_module
from medssl.data.decode import DecodeError, decode, itk_available
from medssl.data.items import Image
from medssl.data.registry import scan
from tests.data.layouts import write_nifti

itk = pytest.importorskip("itk", reason="NRRD/MHA need ITK (pip install -e '.[itk]')")

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def oblique_affine() -> np.ndarray:
    """A rotated, x-flipped, anisotropic voxel -> RAS mm affine with an offset origin."""
    t = np.deg2rad(25)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 1.3, 2.5]) @ np.diag([-1, 1, 1])
    affine[:3, 3] = (12.0, -30.0, 7.5)
    return affine


def write_itk(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """``volume[i, j, k]`` at voxel (i, j, k) of ``affine``; ITK indexes (x, y, z) and stores LPS geometry."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image = itk.image_from_array(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin((LPS_FROM_RAS @ affine[:3, 3]).tolist())
    image.SetDirection(itk.matrix_from_array(LPS_FROM_RAS @ affine[:3, :3] / spacing))
    itk.imwrite(image, str(path))


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    out = rng.normal(0, 1, (9, 7, 5)).astype(np.float32)
    out[5:8, 1:3, 2:4] = 50  # an asymmetric block: an axis flip or transpose would move it
    return out


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_volume_decodes_to_the_voxels_and_ras_geometry_of_the_same_nifti(tmp_path, volume, suffix):
    affine = oblique_affine()
    write_nifti(tmp_path / "v.nii.gz", volume, (), affine)
    write_itk(tmp_path / f"v{suffix}", volume, affine)
    reference = decode(Image((tmp_path / "v.nii.gz",), "nifti"))
    decoded = decode(Image((tmp_path / f"v{suffix}",), "itk"))
    assert decoded.shape == reference.shape == (1, 9, 7, 5)
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(reference), atol=1e-5)
    np.testing.assert_allclose(np.asarray(decoded.affine), np.asarray(reference.affine), atol=1e-4)
    np.testing.assert_allclose(np.asarray(decoded.affine), affine, atol=1e-4)


def test_a_folder_of_nrrd_and_mha_volumes_is_an_unlabeled_corpus(tmp_path, volume):
    affine = oblique_affine()
    write_itk(tmp_path / "a.nrrd", volume, affine)
    (tmp_path / "sub").mkdir()
    write_itk(tmp_path / "sub" / "b.mha", volume[::-1].copy(), affine)
    items = scan(str(tmp_path)).items
    assert sorted(item.image.reader for item in items) == ["itk", "itk"]
    assert sorted(Path(item.image.paths[0]).name for item in items) == ["a.nrrd", "b.mha"]


def test_without_itk_an_nrrd_file_is_one_line_naming_the_install(tmp_path, volume, monkeypatch):
    write_itk(tmp_path / "v.nrrd", volume, oblique_affine())
    assert itk_available()
    monkeypatch.setattr(decode_module, "itk_available", lambda: False)
    with pytest.raises(DecodeError, match=r"need ITK \(pip install"):
        decode(Image((tmp_path / "v.nrrd",), "itk"))
