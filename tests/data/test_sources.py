"""File sources through the item model: geometry of NIfTI volumes, manifests (DRIVE, CHASE_DB1, labelled
volumes), MSD / nnU-Net folders, globs, and their one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medssl.data.items import Image, Item
from medssl.data.masks import load_seg_data
from medssl.data.preprocess import Preprocessing, prepare_item
from medssl.data.registry import find_source, scan
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from tests.conftest import shared_file
from tests.data.layouts import write_drive, write_msd, write_nifti, write_volume_manifest


def rotated_affine(angle_deg: float, spacing: tuple[float, float, float], origin: tuple[float, float, float],
                   flip_x: bool = False) -> np.ndarray:
    t = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing) @ np.diag([-1 if flip_x else 1, 1, 1])
    affine[:3, 3] = origin
    return affine


@pytest.mark.parametrize("flip_x", [False, True])
def test_anisotropic_rotated_volume_resamples_to_expected_shape_and_world_position(tmp_path, flip_x):
    affine = rotated_affine(30, (0.5, 2.0, 3.0), (10, -20, 5), flip_x)
    volume = np.zeros((20, 10, 8), np.float32)
    volume[12:15, 4:6, 3:5] = 100  # a bright block whose world position is known
    write_nifti(tmp_path / "v.nii.gz", volume, (), affine)
    item = Item("v", Image((tmp_path / "v.nii.gz",), "nifti"))
    out = prepare_item(item, Preprocessing(spacing=(1.0, 1.0, 1.0), intensity="range:0,100"))
    # MONAI's grid spans the voxel centres: (n - 1) * spacing / target + 1 voxels per axis
    assert out.image.shape == (1, 10, 19, 22)
    assert np.allclose(out.spacing, (1, 1, 1))
    assert (np.diag(out.affine)[:3] > 0).all()  # RAS: a flipped x axis is turned back
    expected = (affine @ np.r_[np.argwhere(volume > 0).mean(0), 1])[:3]
    found = (out.affine @ np.r_[np.argwhere(out.image[0] > 127).mean(0), 1])[:3]
    np.testing.assert_allclose(found, expected, atol=0.5)  # within half a target voxel
    assert out.native_shape == (20, 10, 8) and np.allclose(out.native_spacing, (0.5, 2, 3))


def test_ct_window_maps_hounsfield_units_and_mr_uses_percentiles(tmp_path):
    values = np.linspace(-2000, 2000, 5 * 5 * 5, dtype=np.float32).reshape(5, 5, 5)
    write_nifti(tmp_path / "v.nii.gz", values, (1, 1, 1))
    image = Image((tmp_path / "v.nii.gz",), "nifti")
    ct = prepare_item(Item("v", image, "CT"), Preprocessing(intensity="ct:-1000,400")).image[0]
    expected = np.clip((values + 1000) / 1400 * 255, 0, 255)
    np.testing.assert_allclose(ct, np.rint(expected), atol=1)
    mr = prepare_item(Item("v", image, "MR"), Preprocessing(intensity="ct:-1000,400")).image[0]
    low, high = np.percentile(values, (0.5, 99.5))
    np.testing.assert_allclose(mr, np.rint(np.clip((values - low) / (high - low) * 255, 0, 255)), atol=1)


def test_drive_official_layout_loads_through_a_manifest(tmp_path):
    manifest = write_drive(tmp_path)
    data = load_seg_data(str(manifest))
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert data.splits["train"].names[0] == "21_training" and data.channels == 3
    truth = np.array(PILImage.open(tmp_path / "1st_manual" / "21_manual1.gif")) > 0
    np.testing.assert_array_equal(data.splits["train"].masks[0, 0] >= 128, truth)
    assert data.splits["train"].fov is not None and data.splits["train"].fov.all()
    assert data.splits["train"].spacing == [(1.0, 1.0)] * 3


@pytest.mark.real_data
def test_chasedb1_loads_through_a_manifest_with_first_observer_masks(tmp_path):
    root = shared_file("chasedb1")
    rows = [f"{root}/Image_0{n}{side}.jpg,{root}/Image_0{n}{side}_1stHO.png,{split}"
            for n, side, split in [(1, "L", "train"), (1, "R", "train"), (2, "L", "val"), (2, "R", "test")]]
    (tmp_path / "chase.csv").write_text("path,mask,split\n" + "\n".join(rows) + "\n")
    data = load_seg_data(str(tmp_path / "chase.csv"), size=32, fov="threshold")
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert data.splits["train"].images.shape == (2, 3, 32, 32)
    native = data.splits["test"].native_masks[0]
    truth = np.array(PILImage.open(shared_file("chasedb1") / "Image_02R_1stHO.png")) > 0
    np.testing.assert_array_equal(native[0], truth)


def test_labelled_volume_manifest_resamples_and_crops_to_one_size(tmp_path):
    manifest = write_volume_manifest(tmp_path, n=8)
    data = load_data(str(manifest), size=12, preprocessing=Preprocessing(spacing=(2.0, 2.0, 2.0)))
    assert data.spatial_dims == 3 and data.num_classes == 2
    sizes = {s: split.images.shape for s, split in data.splits.items()}
    assert all(shape[1:] == (1, 12, 12, 12) for shape in sizes.values()) and sum(v[0] for v in sizes.values()) == 8
    with pytest.raises(MedsslError, match="images differ in size"):
        load_data(str(manifest))


def test_msd_folder_multichannel_images_and_multiclass_labels(tmp_path):
    root = write_msd(tmp_path / "msd", n=6, channels=2)
    assert find_source(str(root)).name == "msd"
    seg = load_seg_data(str(root))
    assert seg.channels == 2 and sum(len(s) for s in seg.splits.values()) == 6  # the test image has no label
    assert seg.source["class_names"] == ["background", "core", "edge"]
    collection = scan(str(root))
    labels = np.asarray(__import__("nibabel").load(str(collection.items[0].mask.paths[0])).dataobj)
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(seg.splits["train"].masks[0, 0] > 0, labels > 0)  # every class is foreground
    unlabeled = load_data(str(root))  # pre-training sees every image, test images included
    assert unlabeled.splits["train"].images.shape == (7, 2, 16, 16, 12)


def test_nnunet_layout_stacks_one_file_per_channel(tmp_path):
    root = write_msd(tmp_path / "nn", n=5, channels=3, nnunet=True)
    seg = load_seg_data(str(root))
    assert seg.channels == 3 and sum(len(s) for s in seg.splits.values()) == 5
    image = seg.splits["train"].images[0]
    assert not np.array_equal(image[0], image[2])  # three different channel files, in order


def test_glob_of_nifti_volumes_is_an_unlabeled_corpus(tmp_path):
    for i in range(3):
        write_nifti(tmp_path / f"v{i}.nii.gz", np.full((6, 6, 4), i, np.float32) + np.eye(6)[..., None], (1, 1, 1))
    (tmp_path / "other.txt").write_text("x")
    data = load_data(str(tmp_path / "*.nii.gz"))
    assert data.splits["train"].images.shape == (3, 1, 6, 6, 4)


def test_manifest_path_that_does_not_exist_is_one_error_naming_the_line(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nmissing.nii.gz,1\n")
    with pytest.raises(MedsslError, match=r"m.csv line 2: 'missing.nii.gz' not found"):
        load_data(str(tmp_path / "m.csv"))


def test_mask_whose_geometry_differs_from_its_image_is_an_error(tmp_path):
    write_nifti(tmp_path / "img.nii.gz", np.zeros((8, 8, 6), np.float32), (1, 1, 1))
    write_nifti(tmp_path / "mask.nii.gz", np.ones((8, 8, 6), np.uint8), (1, 1, 2))  # other spacing
    rows = "\n".join(f"img.nii.gz,mask.nii.gz,{s}" for s in ("train", "val", "test"))
    (tmp_path / "m.csv").write_text(f"path,mask,split\n{rows}\n")
    with pytest.raises(MedsslError, match="the mask's geometry differs from its image"):
        load_seg_data(str(tmp_path / "m.csv"))


def test_mixed_ct_and_mr_without_an_intensity_option_is_refused(tmp_path):
    write_nifti(tmp_path / "a.nii.gz", np.zeros((6, 6, 4), np.float32), (1, 1, 1))
    (tmp_path / "m.csv").write_text("path,modality\na.nii.gz,CT\na.nii.gz,MR\n")
    with pytest.raises(MedsslError, match="mixes modalities CT and MR"):
        load_data(str(tmp_path / "m.csv"))
    data = load_data(str(tmp_path / "m.csv"), preprocessing=Preprocessing(intensity="ct:-1000,400"))
    assert len(data.splits["train"]) == 2


def test_a_manifest_split_column_without_val_rows_is_one_error(tmp_path):
    manifest = write_drive(tmp_path)
    lines = manifest.read_text().splitlines()
    rows = [f"{line},{'train' if i < 4 else 'test'}" for i, line in enumerate(lines[1:])]
    (tmp_path / "split.csv").write_text("\n".join([lines[0] + ",split", *rows]) + "\n")
    with pytest.raises(MedsslError, match="no val images: a 'split' column must name train, val and test rows"):
        load_seg_data(str(tmp_path / "split.csv"))
