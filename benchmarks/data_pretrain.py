"""Pre-training from a ``data prepare`` cache: throughput against the same patches held in memory, and peak
resident memory when the cache is larger than the memory the process may use.

    python benchmarks/data_pretrain.py throughput [--steps 12] [--reps 2]
    python benchmarks/data_pretrain.py rss [--limit-gb 2] [--steps 20]

``throughput``: 3D SimCLR, ResNet-10 x0.25, batch 8, 64^3 patches. The cache side draws random patches from
memory-mapped volumes on every step (what ``--data CACHE --patch 64`` does); the in-memory side trains on an
array of patches drawn once. Repetitions alternate. One JSON line: images/s of each and their ratio.

``rss``: prepares 6 generated 160x160x128 volumes, pre-trains from them (48^3 patches, batch 4) in a child
process whose data segment is capped at --limit-gb (RLIMIT_DATA: heap and anonymous memory, not read-only file
mappings), then replicates the cache entries until the cache is 3x that limit (a replicated corpus) and runs
the same child on it. One JSON line: both children's peak RSS (GNU time's maximum resident set) beside the cache sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from medssl.data.cache import MANIFEST, prepare
from medssl.data.preprocess import Preprocessing

PRE = Preprocessing(spacing=(1.0, 1.0, 1.0), intensity="range:-1000,1000")


def make_cache(root: Path, volumes: int, shape: tuple[int, int, int]) -> Path:
    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for i in range(volumes):
        data = (rng.normal(0, 300, shape) + np.linspace(-600, 600, shape[0])[:, None, None]).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), str(corpus / f"v{i}.nii"))
    prepare(str(corpus), root / "cache", PRE, progress=False, log=lambda _: None)
    return root / "cache"


def pretrain_rate(data, steps: int, out: Path) -> float:
    from medssl.api import pretrain
    from medssl.config import PretrainConfig

    config = PretrainConfig(data="(in memory)", out=str(out), method="simclr", backbone="resnet10", width=0.25,
                            batch_size=8, epochs=100, max_steps=steps, accelerator="cpu", overwrite=True)
    return pretrain(config, data=data, progress=False).metrics["images_per_second"]


def throughput(args: argparse.Namespace) -> None:
    import torch

    from medssl.data.dataset import ImageData, Split
    from medssl.data.sampling import Sampling
    from medssl.data.sources import load_data

    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), 8, (96, 96, 96))
        sampling = Sampling(patch=(64, 64, 64), patches_per_image=8)
        from_cache = load_data(str(cache), sampling=sampling)
        torch.manual_seed(0)
        crops = from_cache.splits["train"].images
        in_memory = ImageData("memory", {"train": Split(crops[np.arange(len(crops))],
                                                        from_cache.splits["train"].labels)}, 3, 1)
        rates: dict[str, list[float]] = {"cache": [], "memory": []}
        pretrain_rate(in_memory, 2, Path(tmp) / "warm")  # imports and first-step setup
        for _ in range(args.reps):
            rates["memory"].append(pretrain_rate(in_memory, args.steps, Path(tmp) / "m"))
            rates["cache"].append(pretrain_rate(from_cache, args.steps, Path(tmp) / "c"))
    cache_rate, memory_rate = statistics.median(rates["cache"]), statistics.median(rates["memory"])
    print(json.dumps({"benchmark": "pretrain_from_cache", "method": "simclr", "backbone": "resnet10x0.25",
                      "patch": 64, "batch": 8, "steps": args.steps, "reps": args.reps,
                      "cache_images_per_s": round(cache_rate, 2), "memory_images_per_s": round(memory_rate, 2),
                      "ratio": round(cache_rate / memory_rate, 3), "all": rates,
                      "threads": torch.get_num_threads(), "cpus": os.cpu_count()}))


def _pretrain_child(cache: Path, out: Path, steps: int, limit: int) -> float:
    """Peak RSS (GB) of a CLI pre-training child whose data segment (heap, anonymous memory; not read-only file
    mappings) is capped at ``limit`` bytes."""
    command = [sys.executable, "-m", "medssl.cli", "pretrain", "--data", str(cache), "--patch", "48",
               "--method", "simclr", "--backbone", "resnet10", "--width", "0.25", "--batch-size", "4",
               "--max-steps", str(steps), "--epochs", "1", "--out", str(out), "--no-progress", "--accelerator", "cpu"]
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", *command], check=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)))
    line = next(x for x in reversed(result.stderr.splitlines()) if x.startswith("maxrss_kb="))
    return int(line.removeprefix("maxrss_kb=")) / 1e6


def rss(args: argparse.Namespace) -> None:
    limit = int(args.limit_gb * 1e9)
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp), 6, (160, 160, 128))
        small_peak = _pretrain_child(cache, Path(tmp) / "small", args.steps, limit)
        manifest = json.loads((cache / MANIFEST).read_text())
        originals = list(manifest["items"])
        size = sum((cache / e["image"]).stat().st_size for e in originals)
        small_size = size
        copies = 0
        while size < 3 * limit:
            for entry in originals:
                copy = dict(entry, name=f"{entry['name']}#{copies}", image=f"volumes/copy{copies:05d}.npy")
                shutil.copyfile(cache / entry["image"], cache / copy["image"])
                manifest["items"].append(copy)
                size += (cache / entry["image"]).stat().st_size
                copies += 1
        (cache / MANIFEST).write_text(json.dumps(manifest))
        large_peak = _pretrain_child(cache, Path(tmp) / "large", args.steps, limit)
    print(json.dumps({"benchmark": "pretrain_rss_from_cache", "memory_limit_GB": args.limit_gb,
                      "cache_GB": round(size / 1e9, 2), "volumes": len(manifest["items"]),
                      "peak_rss_GB": round(large_peak, 2), "small_cache_GB": round(small_size / 1e9, 2),
                      "small_cache_peak_rss_GB": round(small_peak, 2), "steps": args.steps, "patch": 48, "batch": 4}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--steps", type=int, default=12)
    t.add_argument("--reps", type=int, default=2)
    r = sub.add_parser("rss")
    r.add_argument("--limit-gb", type=float, default=2.0)
    r.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    throughput(args) if args.mode == "throughput" else rss(args)


if __name__ == "__main__":
    main()
