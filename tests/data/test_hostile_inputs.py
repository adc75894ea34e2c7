"""Hostile inputs: whatever a file or spec holds, a loader returns valid data or raises MedsslError, never
another exception, never a large allocation, never code execution."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medssl.data.folder import load_folder
from medssl.data.npz import load_npz
from medssl.data.sources import load_data
from medssl.errors import MedsslError

SPLITS = ("train", "val", "test")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                   hnp.complex_number_dtypes(), hnp.boolean_dtypes(), st.just(np.dtype("U3")),
                   st.just(np.dtype("datetime64[s]")))
arrays = dtypes.flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)))


def _npz_bytes(members: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **members)
    return buffer.getvalue()


def _valid_members() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{s}_{k}": (rng.integers(0, 255, (4, 8, 8), dtype=np.uint8) if k == "images" else np.arange(4) % 2)
            for s in SPLITS for k in ("images", "labels")}


def _loads_or_refuses(path: Path) -> None:
    try:
        data = load_npz(path)
    except MedsslError as err:
        assert "\n" not in str(err)
        return
    for split in data.splits.values():  # what loads is usable
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        assert split.images.ndim == data.spatial_dims + 2 and len(split.images) == len(split.labels)


@FAST
@given(images=arrays, labels=arrays, key=st.sampled_from([f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]))
def test_npz_with_any_array_in_any_slot_loads_or_is_refused(tmp_path, images, labels, key):
    members = _valid_members()
    members[key] = images if key.endswith("images") else labels
    path = tmp_path / "a.npz"
    path.write_bytes(_npz_bytes(members))
    _loads_or_refuses(path)


@FAST
@given(images=arrays, labels=arrays)
def test_npz_with_the_same_random_arrays_in_every_split_loads_or_is_refused(tmp_path, images, labels):
    path = tmp_path / "b.npz"
    path.write_bytes(_npz_bytes({f"{s}_{k}": images if k == "images" else labels
                                 for s in SPLITS for k in ("images", "labels")}))
    _loads_or_refuses(path)


def test_nan_and_inf_pixels_are_refused(tmp_path):
    for bad in (np.nan, np.inf, -np.inf):
        members = _valid_members()
        members["val_images"] = members["val_images"].astype(np.float32)
        members["val_images"][1, 2, 3] = bad
        path = tmp_path / "nan.npz"
        path.write_bytes(_npz_bytes(members))
        with pytest.raises(MedsslError, match="NaN or Inf"):
            load_npz(path)


@FAST
@given(cut=st.floats(0.0, 1.0), compressed=st.booleans())
def test_truncated_npz_is_refused(tmp_path, cut, compressed):
    raw = _npz_bytes(_valid_members(), compressed)
    path = tmp_path / "t.npz"
    path.write_bytes(raw[: int(cut * (len(raw) - 1))])
    with pytest.raises(MedsslError):
        load_npz(path)


@FAST
@given(data=st.data(), compressed=st.booleans())
def test_npz_with_corrupted_bytes_loads_or_is_refused(tmp_path, data, compressed):
    raw = bytearray(_npz_bytes(_valid_members(), compressed))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "c.npz"
    path.write_bytes(bytes(raw))
    _loads_or_refuses(path)


def _forged_npz(path: Path, key: str, header: dict, payload: bytes = b"") -> None:
    """An npz whose member ``key`` carries a hand-written .npy header (e.g. declaring a terabyte)."""
    text = repr(header).encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in _valid_members().items():
            if name != key:
                buffer = io.BytesIO()
                np.save(buffer, array)
                archive.writestr(f"{name}.npy", buffer.getvalue())
        archive.writestr(f"{key}.npy", member)


def test_npz_declaring_a_terabyte_array_fails_fast_without_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    _forged_npz(path, "train_images", {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**3, 10**3)},
                b"\x00" * 64)
    with pytest.raises(MedsslError, match="declares 1,000,000,000,000 bytes"):
        load_npz(path)


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    path = tmp_path / "obj.npz"
    _forged_npz(path, "train_labels", {"descr": "|O", "fortran_order": False, "shape": (4,)}, payload)
    with pytest.raises(MedsslError, match="Python objects"):
        load_npz(path)
    assert not marker.exists()


def test_a_pickle_named_npz_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "p.npz"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(MedsslError):
        load_data(str(path))
    assert not marker.exists()


def test_a_bare_npy_array_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(MedsslError, match=r"not an \.npz archive"):
        load_npz(path)


class _Exploit:
    """Unpickling this would create a marker file: proves a loader never unpickles."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


path_parts = st.sampled_from(["..", ".", "a", "img.png", "/", "\\", "~", "\x00", "%2e%2e", "..\\..", "C:", " "])


@FAST
@given(parts=st.lists(path_parts, min_size=1, max_size=5))
def test_labels_csv_paths_never_escape_the_folder(tmp_path, parts):
    root = tmp_path / "folder"
    root.mkdir(exist_ok=True)
    (tmp_path / "secret.png").write_bytes(b"not an image")
    rel = "/".join(parts) if parts[0] != "/" else "".join(parts)
    (root / "labels.csv").write_text(f"path,label\n{rel},0\n../secret.png,1\n", encoding="utf-8")
    with pytest.raises(MedsslError):
        load_folder(root)


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", root / "inside.png")
    (root / "labels.csv").write_text("path,label\ninside.png,0\n")
    with pytest.raises(MedsslError, match="outside"):
        load_folder(root)


BAD_SPECS = [
    "synthetic:lesions4d", "synthetic:", "synthetic:..", "synthetic:lesions2d@", "synthetic:lesions2d@0",
    "synthetic:lesions2d@4", "synthetic:lesions2d@-3", "synthetic:lesions2d@99999999", "synthetic:lesions2d@1e3",
    "synthetic:lesions2d?n=0", "synthetic:lesions2d?n=-1", "synthetic:lesions2d?n=10000000000",
    "synthetic:lesions3d@16?n=10000000000", "synthetic:lesions2d?ratio=nan", "synthetic:lesions2d?ratio=inf",
    "synthetic:lesions2d?ratio=0", "synthetic:lesions2d?n=abc", "synthetic:lesions2d?val_fraction=1.5",
    "synthetic:lesions2d?val_fraction=nan", "synthetic:lesions2d?n=3", "synthetic:lesions2d?bad=1",
    "synthetic:lesions2d?n", "synthetic:lesions2d?seed=1e400",
    # refused before any download: tests never reach the network
    "medmnist:../../etc/passwd", "medmnist:a/b", "medmnist:", "medmnist:x@7", "medmnist:..@28", "medmnist:a b",
    "medmnist:x\x00", "", "\x00", "../../../../nonexistent", "/dev/null/x",
]


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_hostile_data_spec_is_refused_fast_in_one_line(spec):
    with pytest.raises(MedsslError) as caught:
        load_data(spec)
    assert "\n" not in str(caught.value)


@FAST
@given(spec=st.text(max_size=30))
def test_any_text_as_data_spec_is_refused_or_loads(spec):
    try:
        load_data(spec)
    except MedsslError as err:
        assert "\n" not in str(err)


# Through the command line: one line on stderr, exit 2, nothing that reads as a finished run.

def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    from medssl.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("medssl: error: ") and err.count("\n") == 1, err
    return err


TRAIN = ["--backbone", "resnet10", "--width", "0.25", "--batch-size", "8", "--epochs", "1", "--accelerator", "cpu",
         "--no-progress"]


def test_cli_refuses_forged_and_pickled_npz_in_one_line(tmp_path, capsys):
    huge, objects = tmp_path / "huge.npz", tmp_path / "obj.npz"
    _forged_npz(huge, "val_images", {"descr": "<f8", "fortran_order": False, "shape": (10**13,)})
    _forged_npz(objects, "test_labels", {"descr": "|O", "fortran_order": False, "shape": (4,)},
                pickle.dumps(_Exploit(str(tmp_path / "pwned"))))
    for path in (huge, objects):
        _one_line_error(["pretrain", "--data", str(path), "--out", str(tmp_path / "run"), *TRAIN], capsys)
        assert not (tmp_path / "run").exists()
    assert not (tmp_path / "pwned").exists()


def test_cli_refuses_a_code_carrying_checkpoint_in_an_unfinished_run(tmp_path, capsys):
    import torch

    from medssl.cli import main

    run = tmp_path / "run"
    args = ["pretrain", "--data", "synthetic:lesions2d@16?n=60", "--out", str(run), *TRAIN]
    assert main(args) == 0
    (run / "metrics.json").unlink()  # an unfinished run ...
    marker = tmp_path / "pwned"  # ... whose last checkpoint was replaced by something that runs code
    torch.save({"state_dict": {}, "loops": {}, "optimizer_states": [], "x": _Exploit(str(marker))},
               run / "checkpoints" / "last.ckpt")
    err = _one_line_error(args, capsys)
    assert "not a readable training checkpoint" in err and not marker.exists()
    assert not (run / "metrics.json").exists()


def test_cli_full_disk_while_checkpointing_is_one_line_and_leaves_no_valid_looking_file(tmp_path, capsys,
                                                                                       monkeypatch):
    import errno

    from medssl import runio

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runio.torch, "save", full)
    run = tmp_path / "run"
    err = _one_line_error(["pretrain", "--data", "synthetic:lesions2d@16?n=60", "--out", str(run), *TRAIN], capsys)
    assert "No space left on device" in err
    assert not (run / "metrics.json").exists() and not (run / "checkpoints" / "last.ckpt").exists()
    assert not [p for p in run.rglob("*") if p.is_file() and p.name.startswith(".")]  # no temp files left


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds no pixel data."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@FAST
@given(content=st.one_of(st.binary(max_size=64), st.builds(_png_header, st.integers(1, 2**31 - 1),
                                                            st.integers(1, 2**31 - 1))),
       suffix=st.sampled_from([".png", ".jpg", ".dcm", ".nii", ".nii.gz"]))
def test_folder_with_a_garbage_or_forged_image_file_is_refused(tmp_path, content, suffix):
    root = tmp_path / "folder"
    root.mkdir(exist_ok=True)
    (root / f"a{suffix}").write_bytes(content)
    (root / "labels.csv").write_text(f"path,label,split\na{suffix},0,train\na{suffix},0,val\na{suffix},0,test\n")
    with pytest.raises(MedsslError):
        load_folder(root)
