"""Tests for the procedural lesion dataset (synthetic:lesions2d / synthetic:lesions3d)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medssl.data.dataset import SPLITS
from medssl.data.synthetic import make_lesions
from medssl.errors import MedsslError


def _all(data) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([data.splits[s].images for s in SPLITS]),
            np.concatenate([data.splits[s].labels for s in SPLITS]))


@pytest.mark.parametrize("dims", [2, 3])
def test_same_seed_gives_byte_identical_data(dims: int) -> None:
    a, b = make_lesions(dims, n=60, size=16, seed=3), make_lesions(dims, n=60, size=16, seed=3)
    for s in SPLITS:
        assert np.array_equal(a.splits[s].images, b.splits[s].images)
        assert np.array_equal(a.splits[s].labels, b.splits[s].labels)


def test_different_seed_gives_different_images() -> None:
    a, b = make_lesions(2, n=60, seed=0), make_lesions(2, n=60, seed=1)
    assert not np.array_equal(a.splits["train"].images, b.splits["train"].images)


@pytest.mark.parametrize(("dims", "size"), [(2, 32), (2, 48), (3, 16)])
def test_shapes_dtypes_names_and_splits(dims: int, size: int) -> None:
    data = make_lesions(dims, n=80, size=size)
    assert data.name == f"synthetic:lesions{dims}d"
    assert data.spatial_dims == dims and data.num_classes == 2 and data.channels == 1
    assert data.class_names == ["benign-like", "malignant-like"]
    assert data.spatial_shape == (size,) * dims
    assert set(data.splits) == set(SPLITS)
    for split in data.splits.values():
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        assert split.images.shape[1:] == (1, *(size,) * dims)
    assert sum(len(s) for s in data.splits.values()) == 80


def test_images_use_the_intensity_range_and_differ_from_each_other() -> None:
    images, _ = _all(make_lesions(2, n=50))
    assert images.min() < 30 and images.max() > 200
    assert len({im.tobytes() for im in images}) == len(images)


@pytest.mark.parametrize(("n", "ratio"), [(300, 2.0), (300, 1.0), (400, 3.0), (101, 1.5)])
def test_class_ratio_is_honoured_within_rounding(n: int, ratio: float) -> None:
    _, labels = _all(make_lesions(2, n=n, size=16, ratio=ratio))
    n0, n1 = int((labels == 0).sum()), int((labels == 1).sum())
    assert n0 + n1 == n
    assert n0 == round(n * ratio / (1 + ratio))
    assert n0 >= n1


def test_splits_are_stratified_with_the_requested_fractions() -> None:
    data = make_lesions(2, n=600, size=16, ratio=2.0, val_fraction=0.2, test_fraction=0.3)
    counts = {s: data.class_counts(s) for s in SPLITS}
    assert [sum(c) for c in zip(*counts.values(), strict=True)] == [400, 200]
    for c, total in enumerate((400, 200)):
        assert counts["val"][c] == round(total * 0.2)
        assert counts["test"][c] == round(total * 0.3)
        assert counts["train"][c] == total - round(total * 0.2) - round(total * 0.3)


def test_splits_do_not_share_images() -> None:
    data = make_lesions(2, n=120, size=16)
    seen = [{im.tobytes() for im in data.splits[s].images} for s in SPLITS]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


@pytest.mark.parametrize(("dims", "n", "size"), [(2, 2000, 32), (3, 160, 20)])
def test_brightness_does_not_predict_the_label(dims: int, n: int, size: int) -> None:
    images, labels = _all(make_lesions(dims, n=n, size=size, ratio=1.0, seed=5))
    flat = images.reshape(len(images), -1).astype(np.float64)
    tolerance = 0.1 if dims == 2 else 0.15  # fewer 3D samples, so a wider band
    for feature in (flat.mean(1), flat.std(1), flat.max(1)):
        assert abs(roc_auc_score(labels, feature) - 0.5) < tolerance


def test_generation_is_vectorised_fast_enough() -> None:
    # Floors sit ~10x below the speed on an idle 2-core CPU (2D ~4000/s, 3D 32^3 ~150/s) so a busy CI
    # machine passes, while a per-pixel Python loop (100x slower) would not.
    make_lesions(2, n=40)  # warm-up: torch's first ops are slow
    start = time.perf_counter()
    make_lesions(2, n=1000)
    assert 1000 / (time.perf_counter() - start) >= 250
    start = time.perf_counter()
    make_lesions(3, n=50)
    assert 50 / (time.perf_counter() - start) >= 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"size": 8}, "size"),
        ({"size": 512}, "size"),
        ({"ratio": 0.5}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"val_fraction": -0.1}, "fraction"),
        ({"test_fraction": 1.0}, "fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "fraction"),
        ({"n": 5}, "too small"),
        ({"n": 20, "ratio": 10.0}, "too small"),
        ({"val_fraction": 0.0}, "too small"),
    ],
)
def test_bad_parameters_raise_medssl_error(kwargs: dict, message: str) -> None:
    args = {"spatial_dims": 2, "n": 100, **kwargs}
    with pytest.raises(MedsslError, match=message):
        make_lesions(args.pop("spatial_dims"), **args)
