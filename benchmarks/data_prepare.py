"""``medssl data prepare`` throughput, and .npy memory maps against compressed chunks for patch reads.

    python benchmarks/data_prepare.py [--volumes 50] [--workers 1,2] [--spacing 1.5]

Generates NIfTI volumes of varied shapes (48-96 voxels per axis), spacings (0.7-2.5 mm) and axis flips
(seed 0), then prepares them (RAS, resampled to --spacing, a range normalisation) with each worker count into
a fresh cache (after a one-volume warm-up). One JSON line per run: volumes/min, MB/s of decoded source
voxels (float32) and of cache
written, and the cache size. A last line times random 32^3 patch reads from the cache's memory maps against
the same volumes stored as zlib-compressed 32^3 chunks (what a zarr store would do), the choice the cache
made.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from medssl.data.cache import MANIFEST, prepare
from medssl.data.preprocess import Preprocessing


def write_corpus(root: Path, n: int, seed: int = 0) -> int:
    """``n`` NIfTI volumes; returns their decoded size in bytes (float32)."""
    rng = np.random.default_rng(seed)
    total = 0
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(48, 97, 3))
        affine = np.diag([*rng.uniform(0.7, 2.5, 3) * rng.choice([-1, 1], 3), 1.0])
        data = (rng.normal(0, 200, shape) + np.linspace(-500, 500, shape[2])).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), str(root / f"vol{i:03d}.nii.gz"))
        total += data.nbytes
    return total


def patch_reads(cache: Path, reads: int = 400, patch: int = 32, seed: int = 0) -> dict:
    manifest = json.loads((cache / MANIFEST).read_text())
    maps = [np.load(cache / e["image"], mmap_mode="r") for e in manifest["items"]]
    maps = [m for m in maps if min(m.shape[1:]) >= patch]
    chunked = []  # each volume as zlib-compressed patch^3 chunks, as a chunked compressed store keeps it
    for m in maps:
        chunks = {}
        for index in np.ndindex(*(s // patch for s in m.shape[1:])):
            window = tuple(slice(i * patch, (i + 1) * patch) for i in index)
            chunks[index] = zlib.compress(np.ascontiguousarray(m[(0, *window)]).tobytes(), 1)
        chunked.append((chunks, m.shape[1:]))
    rng = np.random.default_rng(seed)
    picks = [(int(rng.integers(len(maps))), rng.random(3)) for _ in range(reads)]
    start = time.perf_counter()
    for v, where in picks:
        m = maps[v]
        at = [int(f * (s - patch)) for f, s in zip(where, m.shape[1:], strict=True)]
        np.ascontiguousarray(m[(0, *(slice(a, a + patch) for a in at))])
    mmap_s = time.perf_counter() - start
    start = time.perf_counter()
    for v, where in picks:  # an unaligned patch touches up to 8 chunks, each decompressed whole
        chunks, shape = chunked[v]
        at = [int(f * (s - patch)) for f, s in zip(where, shape, strict=True)]
        first = [a // patch for a in at]
        for index in np.ndindex(2, 2, 2):
            key = tuple(f + i for f, i in zip(first, index, strict=True))
            if key in chunks:
                np.frombuffer(zlib.decompress(chunks[key]), np.uint8)
    chunk_s = time.perf_counter() - start
    stored = sum(len(c) for chunks, _ in chunked for c in chunks.values())
    raw = sum(int(np.prod(m.shape[1:]) // patch**3 * patch**3) for m in maps)
    return {"benchmark": "patch_reads", "reads": reads, "patch": patch, "npy_mmap_reads_per_s": reads / mmap_s,
            "zlib_chunk_reads_per_s": reads / chunk_s, "chunk_compression_ratio": raw / stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=50)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--spacing", type=float, default=1.5)
    args = parser.parse_args()
    pre = Preprocessing(spacing=(args.spacing,) * 3, intensity="range:-1000,1000")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        decoded = write_corpus(corpus, args.volumes)
        on_disk = sum(p.stat().st_size for p in corpus.iterdir())
        warm = Path(tmp) / "warm"  # imports and first-call setup out of the timings
        write_corpus(warm, 1, seed=1)
        prepare(str(warm), Path(tmp) / "warm-cache", pre, progress=False, log=lambda _: None)
        for workers in (int(w) for w in args.workers.split(",")):
            cache = Path(tmp) / f"cache{workers}"
            start = time.perf_counter()
            prepare(str(corpus), cache, pre, workers=workers, progress=False, log=lambda _: None)
            seconds = time.perf_counter() - start
            written = sum(p.stat().st_size for p in cache.rglob("*.npy"))
            print(json.dumps({"benchmark": "data_prepare", "volumes": args.volumes, "workers": workers,
                              "seconds": round(seconds, 2), "volumes_per_min": round(60 * args.volumes / seconds, 1),
                              "decoded_MB_per_s": round(decoded / seconds / 1e6, 1),
                              "source_MB_on_disk": round(on_disk / 1e6, 1),
                              "cache_MB": round(written / 1e6, 1),
                              "cache_MB_per_s": round(written / seconds / 1e6, 1), "cpus": os.cpu_count()}),
                  flush=True)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in patch_reads(cache).items()}))


if __name__ == "__main__":
    main()
