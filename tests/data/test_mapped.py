"""Memory-mapped npz members: the same data as np.load, read-only, and resident memory stays flat."""

import zipfile

import numpy as np
import pytest

from medssl.data.mapped import map_npz_member, release_pages
from medssl.data.npz import load_npz
from medssl.errors import MedsslError
from medssl.training import BatchIndexedArrays


def _medmnist(path, n=64, shape=(12, 12), compressed=False):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.integers(0, 256, (n, *shape), dtype=np.uint8) if k == "images" else np.arange(n) % 2)
              for s in ("train", "val", "test") for k in ("images", "labels")}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


def _rss_file_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))


def test_mapped_member_equals_the_loaded_array_and_is_read_only(tmp_path):
    arrays = _medmnist(tmp_path / "d.npz")
    mapped = map_npz_member(tmp_path / "d.npz", "train_images")
    assert np.array_equal(mapped, arrays["train_images"])
    assert not mapped.flags.writeable


def test_compressed_or_fortran_members_are_not_mapped(tmp_path):
    _medmnist(tmp_path / "c.npz", compressed=True)
    assert map_npz_member(tmp_path / "c.npz", "train_images") is None
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(np.ones((4, 5), np.uint8)))
    assert map_npz_member(tmp_path / "f.npz", "x") is None


def test_load_npz_maps_large_members_and_batches_match_the_in_memory_data(tmp_path):
    arrays = _medmnist(tmp_path / "d.npz")
    mapped = load_npz(tmp_path / "d.npz", map_above=0)
    loaded = load_npz(tmp_path / "d.npz")
    assert isinstance(mapped.splits["train"].images.base, np.ndarray)  # a view over the mapping, not a copy
    images, labels = BatchIndexedArrays(mapped.splits["train"])[[5, 1, 9]]
    assert np.array_equal(images.numpy()[:, 0], arrays["train_images"][[1, 5, 9]])
    assert labels.tolist() == [1, 1, 1]
    assert np.array_equal(loaded.splits["val"].images, mapped.splits["val"].images)


def test_a_member_declaring_more_bytes_than_stored_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    _medmnist(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header_end = members["train_images.npy"].index(b"\n") + 1
    members["train_images.npy"] = members["train_images.npy"][:header_end + 100]  # header intact, data cut
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    with pytest.raises(MedsslError, match="declares"):
        load_npz(path, map_above=0)


def test_released_pages_leave_resident_memory_flat(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x=np.full((64, 1024, 1024), 7, np.uint8))  # 64 MiB
    mapped = map_npz_member(path, "x")
    before = _rss_file_kib()
    for i in range(64):
        assert mapped[i, ::512, ::512].sum() == 7 * 4
        mapped[i].max()  # touches the whole MiB
        release_pages(mapped)
    grown_with_release = _rss_file_kib() - before
    for i in range(64):
        mapped[i].max()
    grown_without = _rss_file_kib() - before
    assert grown_with_release < 8 * 1024, grown_with_release
    assert grown_without > 48 * 1024, grown_without  # the check above can fail: pages do stay resident
