import numpy as np
import pytest

from medssl.data.npz import load_npz
from medssl.data.sources import describe, load_data
from medssl.errors import MedsslError


def _write(path, images, labels=None, drop=()):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels if labels is not None else np.arange(len(images)) % 2
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


@pytest.mark.real_data
def test_breastmnist_loads_as_2d_grey_with_flat_labels(breastmnist):
    data = load_data(str(breastmnist))
    assert data.spatial_dims == 2 and data.channels == 1 and data.spatial_shape == (28, 28)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [546, 78, 156]
    assert data.class_counts("train") == [147, 399]
    assert data.splits["train"].images.dtype == np.uint8


@pytest.mark.real_data
def test_adrenalmnist3d_loads_as_3d_volumes(adrenal3d):
    data = load_data(str(adrenal3d))
    assert data.spatial_dims == 3 and data.spatial_shape == (28, 28, 28)
    assert data.class_counts("test") == [229, 69]
    assert "spatial_dims: 3" in describe(data)


def test_labels_shaped_n_by_1_and_colour_images_load(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    data = load_npz(_write(tmp_path / "c.npz", images, labels=(np.arange(6) % 3)[:, None]))
    assert data.channels == 3 and data.num_classes == 3
    assert np.array_equal(data.splits["val"].images[2, 1], images[2, :, :, 1])


def test_float_images_are_scaled_to_uint8(tmp_path):
    images = np.linspace(-1000, 400, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    data = load_npz(_write(tmp_path / "f.npz", images))
    values = data.splits["train"].images
    assert values.min() == 0 and values.max() == 255


@pytest.mark.parametrize(
    ("images", "labels", "drop", "match"),
    [
        (np.zeros((4, 8, 8), np.uint8), None, ("val_labels",), "missing keys val_labels"),
        (np.zeros((4, 8), np.uint8), None, (), "dimensions"),
        (np.zeros((4, 8, 8, 8, 8, 8), np.uint8), None, (), "dimensions"),
        (np.full((4, 8, 8), np.nan, np.float32), None, (), "NaN or Inf"),
        (np.full((4, 8, 8), np.inf, np.float32), None, (), "NaN or Inf"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros((4, 3)), (), "labels shaped"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(5), (), "5 labels for 4 images"),
        (np.zeros((4, 8, 8), np.uint8), -np.ones(4), (), "non-negative"),
    ],
)
def test_bad_npz_contents_raise_one_clear_error(tmp_path, images, labels, drop, match):
    with pytest.raises(MedsslError, match=match):
        load_npz(_write(tmp_path / "bad.npz", images, labels, drop))


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(MedsslError, match="not found"):
        load_data(str(tmp_path / "nope.npz"))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(MedsslError, match="not a readable"):
        load_npz(corrupt)


def test_medmnist_without_network_names_the_file_to_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path))
    monkeypatch.setattr("medssl.data.sources.MEDMNIST_URL", "http://127.0.0.1:9/{file}")
    with pytest.raises(MedsslError, match=f"place the file by hand at {tmp_path}/breastmnist_64.npz"):
        load_data("medmnist:breastmnist@64")


def test_medmnist_reads_a_file_placed_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path))
    _write(tmp_path / "toymnist.npz", np.zeros((4, 8, 8), np.uint8))
    assert load_data("medmnist:toymnist").spatial_shape == (8, 8)
