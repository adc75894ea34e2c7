"""Patches and slices of volumes of any size: what they contain, how labels follow, and training from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.cli import main
from medssl.data.dataset import ImageData, Split
from medssl.data.sampling import Sampling, apply_sampling, make_crops
from medssl.data.subsets import fraction_subset
from medssl.errors import MedsslError
from tests.data.layouts import write_nifti, write_volume_manifest


def volume(shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    return ((np.arange(np.prod(shape)).reshape(1, *shape) + offset) % 251).astype(np.uint8)


def test_random_patches_are_windows_of_their_volume_and_centre_crops_are_fixed():
    images = [volume((10, 12, 9)), volume((20, 8, 16), 7)]
    crops = make_crops(images, Sampling(patch=(6, 6, 6), patches_per_image=4), train=True)
    assert crops.shape == (8, 1, 6, 6, 6) and list(crops.image_of) == [0] * 4 + [1] * 4
    torch.manual_seed(0)
    batch = crops[np.arange(8)]
    for patch, source in zip(batch, [images[i] for i in crops.image_of], strict=True):
        # a window of the source: its first voxel's value recurs at the window's offset
        found = np.argwhere(source[0] == patch[0, 0, 0, 0])
        assert any(np.array_equal(source[0][tuple(slice(a, a + s) for a, s in zip(at, (6, 6, 6), strict=True))],
                                  patch[0]) for at in found if all(a + 6 <= d for a, d in zip(at, source.shape[1:],
                                                                                               strict=True)))
    centre = make_crops(images, Sampling(patch=(6, 6, 6)), train=False)
    assert len(centre) == 2
    np.testing.assert_array_equal(centre[0], images[0][:, 2:8, 3:9, 1:7])
    np.testing.assert_array_equal(centre[[0, 1]], centre[[0, 1]])  # deterministic


def test_small_images_are_zero_padded_around_the_centre():
    crops = make_crops([np.full((1, 4, 4), 9, np.uint8)], Sampling(patch=(8,)), train=False)
    out = crops[0][0]
    assert out.shape == (8, 8) and out[2:6, 2:6].min() == 9 and out.sum() == 9 * 16


def test_axial_slices_cover_every_slice_and_carry_their_volume_label():
    images = [volume((6, 5, 3)), volume((4, 7, 2), 3)]
    data = ImageData("v", {"train": Split(np.zeros((2, 1, 1, 1, 1), np.uint8), np.array([0, 1]))}, 3, 2)
    data.splits["train"] = Split(np.stack([np.pad(images[0], ((0, 0), (0, 0), (0, 2), (0, 0))),
                                           np.pad(images[1], ((0, 0), (1, 1), (0, 0), (0, 1)))]), np.array([0, 1]))
    sliced = apply_sampling(data, Sampling(slices="axial"))
    train = sliced.splits["train"]
    assert sliced.spatial_dims == 2 and train.images.shape == (6, 1, 6, 7)
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(train.images[1][0], data.splits["train"].images[0, 0, :, :, 1])


def test_label_fraction_subsets_of_patches_stay_patches():
    crops = make_crops([volume((8, 8, 8), i) for i in range(6)], Sampling(patch=(4,), patches_per_image=2), True)
    labels = np.repeat([0, 1, 0, 1, 0, 1], 2)
    chosen = fraction_subset(labels, 0.5, seed=0)
    subset = Split(crops, labels).subset(chosen)
    assert len(subset) == 6 and subset.images.shape == (6, 1, 4, 4, 4)
    assert subset.images[np.arange(6)].shape == (6, 1, 4, 4, 4)


def test_bad_sampling_requests_are_one_line_errors():
    with pytest.raises(MedsslError, match="slices must be one of"):
        Sampling(slices="oblique")
    with pytest.raises(MedsslError, match="has 3 sizes but the images are 2D"):
        make_crops([np.zeros((1, 8, 8), np.uint8)], Sampling(patch=(4, 4, 4)), train=True)
    with pytest.raises(MedsslError, match="need 3D volumes"):
        make_crops([np.zeros((1, 8, 8), np.uint8)], Sampling(slices="axial"), train=True)


def test_pretraining_on_axial_slices_of_a_volume_folder(tmp_path, capsys):
    for i in range(3):
        write_nifti(tmp_path / "vols" / f"v{i}.nii.gz", np.random.default_rng(i).normal(size=(18 + i, 16, 6)).astype(
            np.float32), (1, 1, 3))
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "vols"), "--slices", "axial", "--patch", "16", "--method",
                 "simclr", "--max-steps", "2", "--batch-size", "6", "--epochs", "1", "--backbone", "resnet10",
                 "--width", "0.125", "--out", str(out), "--no-progress", "--accelerator", "cpu"]) == 0
    assert "spatial_dims: 2" in (out / "config.yaml").read_text()


def test_classification_on_patches_of_volumes_of_different_sizes(tmp_path, capsys):
    manifest = write_volume_manifest(tmp_path, n=8)
    out = tmp_path / "cls"
    assert main(["finetune", "--data", str(manifest), "--patch", "12", "--checkpoint", "scratch", "--out", str(out),
                 "--epochs", "1", "--batch-size", "8", "--backbone", "resnet10", "--width", "0.125",
                 "--no-progress", "--accelerator", "cpu"]) == 0
    assert "test AUC" in capsys.readouterr().out


def test_a_study_spec_run_key_loads_patches_for_its_cells(tmp_path):
    from medssl.study.runner import load_images
    from medssl.study.spec import parse_spec

    manifest = write_volume_manifest(tmp_path, n=8)
    spec = parse_spec({"name": "p", "datasets": [str(manifest)], "methods": ["simclr"],
                       "run": {"patch": 10, "spacing": [2, 2, 2]}})
    assert spec.run == {"patch": 10, "spacing": [2, 2, 2]}
    data = load_images({"data": str(manifest), **spec.run}, {})
    assert data.splits["train"].images.shape[1:] == (1, 10, 10, 10)
    with pytest.raises(MedsslError, match="unknown 'run' setting"):
        parse_spec({"name": "p", "datasets": [str(manifest)], "methods": ["simclr"], "run": {"patches": 10}})
