"""Pre-training from a dataset larger than the process may hold: peak resident memory stays flat.

    python benchmarks/memmap_rss.py [--gib 6] [--limit-gib 2] [--steps 150] [--keep PATH]

Writes a MedMNIST-style npz of ``--gib`` GiB of uncompressed uint8 64x64 images (streamed: the writer never
holds it in memory), then pre-trains SimCLR on it (``medssl.api.pretrain``, ``--steps`` optimizer steps of
random batches drawn from the whole file) in a child process whose data-segment limit (RLIMIT_DATA, which
caps heap and anonymous memory but not read-only file mappings) is ``--limit-gib`` GiB, a third of the
file. The same run on a small in-memory file of the same images gives the baseline: the model's own
activations and the libraries. Prints one JSON line with both children's peak resident set (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

SIZE = 64
CHUNK = 16384  # images written per chunk


def write_large_npz(path: Path, n_train: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    noise = rng.integers(0, 60, (CHUNK, SIZE, SIZE), dtype=np.uint8)  # drawn once: writing must be disk-bound
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for split, n in (("train", n_train), ("val", 512), ("test", 512)):
            with archive.open(f"{split}_images.npy", "w", force_zip64=True) as member:
                header = {"descr": "|u1", "fortran_order": False, "shape": (n, SIZE, SIZE)}
                np.lib.format.write_array_header_1_0(member, header)
                for start in range(0, n, CHUNK):
                    count = min(CHUNK, n - start)
                    # blobs of varying radius on noise (rolled per chunk): not trivially compressible
                    radius = rng.uniform(6, 20, (count, 1, 1))
                    blob = (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < radius**2) * 120).astype(np.uint8)
                    member.write((blob + np.roll(noise[:count], start % SIZE, axis=-1)).tobytes())
            labels = (np.arange(n) % 2).astype(np.int64)
            with archive.open(f"{split}_labels.npy", "w") as member:
                np.lib.format.write_array(member, labels)


def pretrain_limited(path: str, out: str, limit: int, steps: int, queue: multiprocessing.Queue) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import torch

    from medssl.api import pretrain
    from medssl.config import PretrainConfig

    torch.set_num_threads(2)
    start = time.perf_counter()
    result = pretrain(PretrainConfig(data=path, out=out, method="simclr", backbone="resnet10", width=0.25,
                                     epochs=1, max_steps=steps, batch_size=64), progress=False)
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    queue.put({"steps": result.metrics["steps"], "seconds": round(time.perf_counter() - start, 1),
               "peak_rss_mib": round(peak_kib / 1024, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=6.0)
    parser.add_argument("--limit-gib", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--keep", help="write (or reuse) the large npz here instead of a temporary directory")
    args = parser.parse_args()
    limit = int(args.limit_gib * 2**30)
    record: dict = {"rlimit_data_gib": args.limit_gib}
    with tempfile.TemporaryDirectory() as tmp:
        large = Path(args.keep) if args.keep else Path(tmp) / "large.npz"
        n_train = int(args.gib * 2**30 / SIZE**2)
        if not large.is_file():
            start = time.perf_counter()
            write_large_npz(large, n_train)
            print(f"wrote {large.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s", flush=True)
        small = Path(tmp) / "small.npz"
        write_large_npz(small, 2048)
        context = multiprocessing.get_context("spawn")
        for name, path in (("small_in_memory", small), ("large_mapped", large)):
            queue = context.Queue()
            child = context.Process(target=pretrain_limited,
                                    args=(str(path), str(Path(tmp) / name), limit, args.steps, queue))
            child.start()
            child.join()
            record[name] = {"file_gib": round(path.stat().st_size / 2**30, 3), "exit": child.exitcode,
                            **(queue.get() if child.exitcode == 0 else {})}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
