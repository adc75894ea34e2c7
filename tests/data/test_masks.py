"""Segmentation data: image/mask pairing, splits, resizing with native masks kept, FOV, and bad input."""

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medssl.data.masks import load_mask_folder, load_seg_data, make_blobs, random_patches, threshold_fov
from medssl.errors import MedsslError

H, W = 20, 24


def fundus(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A dark-bordered RGB image with a bright vertical 'vessel' and its mask."""
    rng = np.random.default_rng(seed)
    image = np.zeros((H, W, 3), np.uint8)
    image[2:-2, 2:-2] = rng.integers(80, 120, (H - 4, W - 4, 3))
    mask = np.zeros((H, W), bool)
    mask[3:-3, 8 + seed % 4: 10 + seed % 4] = True
    image[mask] = 220
    return image, mask


def write_pair(folder, name: str, image: np.ndarray, mask: np.ndarray, suffix: str = "_1stHO") -> None:
    Image.fromarray(image).save(folder / f"{name}.png")
    Image.fromarray(mask).convert("1").save(folder / f"{name}{suffix}.png")


@pytest.fixture
def chase_like(tmp_path):
    for i in range(6):
        image, mask = fundus(i)
        write_pair(tmp_path, f"Image_{i:02d}L", image, mask)
        Image.fromarray(~mask).convert("1").save(tmp_path / f"Image_{i:02d}L_2ndHO.png")  # second observer: ignored
    return tmp_path


def test_chase_naming_pairs_images_with_first_observer_masks_and_splits_by_name(chase_like):
    data = load_mask_folder(chase_like, mask_suffix="_1stHO", val_count=1, test_count=2)
    assert data.spatial_dims == 2
    assert data.splits["train"].names == ["Image_00L", "Image_01L", "Image_02L"]
    assert data.splits["val"].names == ["Image_03L"] and data.splits["test"].names == ["Image_04L", "Image_05L"]
    split = data.splits["test"]
    assert split.images.shape == (2, 3, H, W) and split.images.dtype == np.uint8
    assert np.array_equal(split.masks[1, 0] >= 128, fundus(5)[1])
    assert split.native_masks is None and split.fov is None


def test_green_channel_and_thresholded_fov(chase_like):
    data = load_mask_folder(chase_like, mask_suffix="_1stHO", channel="green", fov="threshold", test_count=2)
    split = data.splits["train"]
    assert split.images.shape[1] == 1
    assert np.array_equal(split.images[0, 0], fundus(0)[0][..., 1])
    inside = np.zeros((H, W), bool)
    inside[2:-2, 2:-2] = True
    assert np.array_equal(split.fov[0, 0], inside)


def test_threshold_fov_fills_dark_pixels_inside_the_disc():
    image = np.zeros((3, 30, 30), np.uint8)
    image[0, 5:25, 5:25] = 200
    image[0, 14:16, 14:16] = 0  # a dark lesion inside the field of view
    fov = threshold_fov(image)
    assert fov.shape == (1, 30, 30) and fov[0, 15, 15] and not fov[0, 2, 2] and fov[0, 5:25, 5:25].all()


def test_resizing_keeps_native_masks_and_coverage_targets(chase_like):
    data = load_mask_folder(chase_like, mask_suffix="_1stHO", size=12, test_count=2)
    split = data.splits["test"]
    assert split.images.shape == (2, 3, 12, 12)
    assert split.native_masks[0].shape == (1, H, W)
    assert np.array_equal(split.native_masks[0][0], fundus(4)[1])
    assert split.eval_masks(0)[0].shape == (1, H, W) and split.eval_masks(0, native=False)[0].shape == (1, 12, 12)
    values = np.unique(split.masks)
    assert values.min() == 0 and values.max() > 0 and len(values) > 2  # a 2-px vessel halves: soft coverage


def test_images_and_masks_subfolders_with_matching_names(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        image, mask = fundus(i)
        Image.fromarray(image).save(tmp_path / "images" / f"case{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "masks" / f"case{i}.png")  # stored as 0/1
    data = load_mask_folder(tmp_path, val_count=1, test_count=1)
    assert data.splits["test"].names == ["case3"]
    assert np.array_equal(data.splits["test"].masks[0, 0] >= 128, fundus(3)[1])


def test_nifti_volumes_load_as_3d(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        volume = rng.integers(0, 255, (10, 12, 8)).astype(np.uint8)
        mask = np.zeros((10, 12, 8), np.uint8)
        mask[3:6, 4:8, 2:5] = 1
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / f"vol{i}.nii.gz"))
        nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / f"vol{i}_seg.nii.gz"))
    data = load_mask_folder(tmp_path, mask_suffix="_seg", val_count=1, test_count=1)
    assert data.spatial_dims == 3
    assert data.splits["train"].images.shape == (1, 1, 10, 12, 8)
    assert int((data.splits["train"].masks >= 128).sum()) == 3 * 4 * 3


def _bad(tmp_path, case: str):
    image, mask = fundus(0)
    for i in range(4):
        write_pair(tmp_path, f"img{i}", image, mask)
    if case == "size":
        Image.fromarray(mask[:-2]).convert("1").save(tmp_path / "img2_1stHO.png")
    elif case == "nonbinary":
        Image.fromarray((mask * 128 + (np.arange(W) % 2 == 0) * 60).astype(np.uint8)).save(tmp_path / "img1_1stHO.png")
    elif case == "empty":
        Image.fromarray(np.zeros_like(mask)).convert("1").save(tmp_path / "img3_1stHO.png")
    elif case == "unmatched":
        Image.fromarray(image).save(tmp_path / "other.png")
    elif case == "nothing":
        for f in tmp_path.iterdir():
            f.unlink()
    return tmp_path


@pytest.mark.parametrize(("case", "match"), [
    ("size", "differs from image"), ("nonbinary", "must be binary"), ("empty", "mask is empty"),
    ("unmatched", "other.png: no mask named other_1stHO"), ("nothing", "no images found"),
])
def test_bad_pairs_raise_one_clear_error(tmp_path, case, match):
    with pytest.raises(MedsslError, match=match):
        load_mask_folder(_bad(tmp_path, case), mask_suffix="_1stHO", val_count=1, test_count=1)


def test_too_few_images_for_three_splits_is_an_error(chase_like):
    with pytest.raises(MedsslError, match="cannot give at least one train"):
        load_mask_folder(chase_like, mask_suffix="_1stHO", val_count=2, test_count=4)


@pytest.mark.parametrize("dims", [2, 3])
def test_synthetic_blobs_are_deterministic_with_brighter_foreground(dims):
    data = make_blobs(dims, n=8, size=16, seed=3)
    again = make_blobs(dims, n=8, size=16, seed=3)
    assert data.spatial_dims == dims and data.splits["train"].images.shape[2:] == (16,) * dims
    assert np.array_equal(data.splits["test"].masks, again.splits["test"].masks)
    images = np.concatenate([s.images for s in data.splits.values()]).astype(float)
    masks = np.concatenate([s.masks for s in data.splits.values()]) >= 128
    assert masks.any() and images[masks].mean() > images[~masks].mean() + 40


def test_synthetic_spec_and_bad_specs():
    assert load_seg_data("synthetic:blobs3d@16?n=6").splits["train"].images.shape[2:] == (16, 16, 16)
    with pytest.raises(MedsslError, match="unknown synthetic"):
        load_seg_data("synthetic:blobs4d")
    with pytest.raises(MedsslError, match="bad option"):
        load_seg_data("synthetic:blobs2d?m=3")


def test_random_patches_for_pretraining_are_unlabeled_crops():
    data = make_blobs(2, n=8, size=32)
    pool = random_patches(data, 16, 10, splits=("train", "val"))
    assert pool.splits["train"].images.shape == (10, 1, 16, 16)
    assert (pool.splits["train"].labels == -1).all()
    with pytest.raises(MedsslError, match="exceeds"):
        random_patches(data, 64, 2)


def test_images_of_different_sizes_need_resizing(chase_like):
    image, mask = fundus(9)
    write_pair(chase_like, "Image_09L", np.pad(image, ((0, 2), (0, 0), (0, 0))), np.pad(mask, ((0, 2), (0, 0))))
    with pytest.raises(MedsslError, match="pass --size"):
        load_mask_folder(chase_like, mask_suffix="_1stHO", test_count=2)
    data = load_mask_folder(chase_like, mask_suffix="_1stHO", test_count=2, size=16)
    assert data.splits["test"].native_masks[-1].shape == (1, H + 2, W)


def test_chasedb1_gives_the_usual_split_with_first_observer_masks():
    from tests.conftest import shared_file

    data = load_mask_folder(shared_file("chasedb1"), mask_suffix="_1stHO", fov="threshold", channel="green",
                            size=64, val_count=2, test_count=8)
    names = {s: data.splits[s].names for s in ("train", "val", "test")}
    assert len(names["train"]) == 18 and names["val"] == ["Image_10L", "Image_10R"]
    assert names["test"][0] == "Image_11L" and names["test"][-1] == "Image_14R" and len(names["test"]) == 8
    native = data.splits["test"].native_masks[0]
    assert native.shape == (1, 960, 999) and 0.03 < native.mean() < 0.15  # about 7 % vessel
