"""Memory-mapped members of uncompressed ``.npz`` files, for datasets larger than memory.

``np.load`` cannot memory-map a member of an ``.npz`` (it reads the whole array). An uncompressed member
(``np.savez``) is a plain ``.npy`` stored at a known offset in the zip file, so it can be mapped
read-only. Batches are copied out of the map and its pages are then released, so the process's resident
memory stays flat however large the file (the kernel keeps what it can in its page cache).
"""

from __future__ import annotations

import mmap
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # the zip local file header, up to the name and extra fields


def read_npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy at the stream's position, which is left at the data.
    Raises ValueError for a malformed header or an unknown format version."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"unknown .npy version {version}")
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(stream, max_header_size=10_000)


def map_npz_member(path: str | Path, key: str) -> np.ndarray | None:
    """A read-only array mapped onto ``key`` of the npz, or None when it cannot be mapped (compressed,
    Fortran order, object dtype): the caller then loads it normally."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        name_length, extra_length = header[-2], header[-1]
        npy_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        file.seek(npy_start)
        shape, fortran_order, dtype = read_npy_header(file)
        data_start = file.tell()
        if fortran_order or dtype.hasobject:
            return None
        count = int(np.prod(shape, dtype=np.int64))
        if data_start + count * dtype.itemsize > npy_start + info.file_size:
            raise ValueError(f"member {key} declares {shape} {dtype} but the file holds fewer bytes")
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapping, dtype=dtype, count=count, offset=data_start).reshape(shape)


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of the file mapping under ``array`` (no-op for ordinary arrays)."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, mmap.mmap):
        base.madvise(mmap.MADV_DONTNEED)
