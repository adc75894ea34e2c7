"""``data prepare`` caches: equal to decoding on the fly, resumable after kill -9, never stale, consistent on
a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.data.cache import MANIFEST, prepare
from medssl.data.masks import load_seg_data
from medssl.data.preprocess import Preprocessing
from medssl.data.sampling import Sampling
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from tests.data.layouts import write_msd, write_nifti

PRE = Preprocessing(spacing=(1.5, 1.5, 1.5), intensity="range:-300,300")


def write_corpus(root: Path, n: int, seed: int = 0, size: tuple[int, int] = (12, 20)) -> Path:
    """NIfTI volumes of varied shapes, spacings and orientations."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(*size, 3))
        affine = np.diag([*rng.uniform(0.8, 2.5, 3) * rng.choice([-1, 1], 3), 1.0])
        write_nifti(root / f"vol{i:03d}.nii.gz", rng.normal(0, 150, shape).astype(np.float32), (), affine)
    return root


def arrays_of(cache: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((cache / MANIFEST).read_text())
    return {e["name"]: np.load(cache / e["image"]) for e in manifest["items"]}


def test_cached_batches_equal_on_the_fly_batches(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 5)
    prepare(str(corpus), tmp_path / "cache", PRE, progress=False, log=lambda _: None)
    sampling = Sampling(patch=(8, 8, 8), patches_per_image=3)
    direct = load_data(str(corpus), preprocessing=PRE, sampling=sampling)
    cached = load_data(str(tmp_path / "cache"), sampling=sampling)
    for split in (direct, cached):
        assert len(split.splits["train"]) == 15
    torch.manual_seed(7)
    a = direct.splits["train"].images[np.arange(15)]
    torch.manual_seed(7)
    b = cached.splits["train"].images[np.arange(15)]
    assert a.shape == (15, 1, 8, 8, 8) and a.std() > 0
    np.testing.assert_array_equal(a, b)
    whole = load_data(str(tmp_path / "cache"), size=10)  # whole volumes, centre crop/pad at the kept scale
    assert whole.splits["train"].images.shape == (5, 1, 10, 10, 10)


def test_prepare_resumes_after_kill_9_and_equals_an_uninterrupted_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 40, size=(24, 32))
    prepare(str(corpus), tmp_path / "whole", PRE, progress=False, log=lambda _: None)
    command = [sys.executable, "-m", "medssl.cli", "data", "prepare", str(corpus), "--out", str(tmp_path / "killed"),
               "--spacing", "1.5,1.5,1.5", "--intensity", "range:-300,300", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    entries = tmp_path / "killed" / "entries"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(entries.glob("*.json")) if entries.is_dir() else []) < 3:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(entries.glob("*.json")))
    assert 3 <= done < 40 and not (tmp_path / "killed" / MANIFEST).exists()
    with pytest.raises(MedsslError, match="the cache is incomplete"):
        load_data(str(tmp_path / "killed"))
    lines: list[str] = []
    prepare(str(corpus), tmp_path / "killed", PRE, progress=False, log=lines.append)
    assert lines and lines[0].startswith(f"{tmp_path / 'killed'}: resuming, {done} of 40")
    whole, resumed = arrays_of(tmp_path / "whole"), arrays_of(tmp_path / "killed")
    assert whole.keys() == resumed.keys()
    for name in whole:
        np.testing.assert_array_equal(whole[name], resumed[name])
    assert not list((tmp_path / "killed").glob("*/.*"))  # temp files of interrupted writes are gone
    assert not (tmp_path / "killed" / "building.json").exists()


def test_a_cache_is_never_used_or_rebuilt_stale(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 3)
    cache = tmp_path / "cache"
    prepare(str(corpus), cache, PRE, progress=False, log=lambda _: None)
    lines: list[str] = []
    prepare(str(corpus), cache, PRE, progress=False, log=lines.append)
    assert "already prepared" in lines[0]
    other = Preprocessing(spacing=(2.0, 2.0, 2.0), intensity="range:-300,300")
    with pytest.raises(MedsslError, match=r"built with other options \(spacing\); use another --out"):
        prepare(str(corpus), cache, other, progress=False, log=lambda _: None)
    with pytest.raises(MedsslError, match="was prepared with spacing"):
        load_data(str(cache), preprocessing=other)
    write_nifti(corpus / "vol000.nii.gz", np.ones((12, 12, 12), np.float32), (1, 1, 1))  # a changed source file
    with pytest.raises(MedsslError, match="built with other source files"):
        prepare(str(corpus), cache, PRE, progress=False, log=lambda _: None)
    prepare(str(corpus), cache, PRE, progress=False, log=lambda _: None, overwrite=True)
    assert arrays_of(cache)["vol000.nii.gz"].shape == (1, 8, 8, 8)


def test_disk_full_leaves_a_resumable_cache(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus", 4)
    real_save, calls = np.save, []

    def full_disk(file, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(MedsslError, match="No space left on device"):
        prepare(str(corpus), tmp_path / "cache", PRE, progress=False, log=lambda _: None)
    monkeypatch.setattr(np, "save", real_save)
    assert not [p for p in (tmp_path / "cache").rglob("*.npy") if p.name.startswith(".")]  # no partial file
    prepare(str(corpus), tmp_path / "cache", PRE, progress=False, log=lambda _: None)
    prepare(str(corpus), tmp_path / "again", PRE, progress=False, log=lambda _: None)
    for name, array in arrays_of(tmp_path / "again").items():
        np.testing.assert_array_equal(array, arrays_of(tmp_path / "cache")[name])


def test_segmentation_reads_masks_from_a_prepared_msd_folder(tmp_path):
    root = write_msd(tmp_path / "msd", n=5)
    prepare(str(root), tmp_path / "cache", Preprocessing(), progress=False, log=lambda _: None, workers=2)
    direct, cached = load_seg_data(str(root)), load_seg_data(str(tmp_path / "cache"))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(direct.splits[split].images, cached.splits[split].images)
        np.testing.assert_array_equal(direct.splits[split].masks, cached.splits[split].masks)
        assert direct.splits[split].spacing == cached.splits[split].spacing
