"""Every registered method: pre-training throughput, and (optionally) BreastMNIST fine-tuning at 10 % labels.

    python benchmarks/method_zoo.py throughput [--steps 5]      # images/s at 2D 28 px and 3D 28^3
    python benchmarks/method_zoo.py finetune [--epochs 10]       # short pre-training -> 10 % label fine-tune
    python benchmarks/method_zoo.py cli [--pool-3d val]          # `medssl pretrain --epochs 1` on both real sets

Prints one JSON line per method (and configuration). Same backbone and batch for every method.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from medssl.api import finetune, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.sources import load_data
from medssl.methods.base import Pretrainer
from medssl.methods.registry import list_methods, parse_method
from medssl.models.encoder import BackboneSpec, Encoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKBONE = {"backbone": "resnet10", "width": 0.25}


def throughput(method: str, spatial_dims: int, batch: int, steps: int) -> float:
    """Images per second through views + forward + backward + optimizer step, on the CPU."""
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec(BACKBONE["backbone"], spatial_dims, 1, BACKBONE["width"]))
    tasks = [cls(encoder) for cls, _ in parse_method(method)]
    model = Pretrainer(encoder, tasks, [1.0] * len(tasks), num_classes=2)
    model.log = lambda *args, **kwargs: None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (batch, 1, *([28] * spatial_dims)), dtype=torch.uint8)
    labels = torch.zeros(batch, dtype=torch.long)

    def step() -> None:
        loss = model.training_step((images, labels), 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for task in tasks:
            task.on_step_end(encoder, 0.5)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def finetune_at_10_percent(method: str, epochs: int, finetune_epochs: int, seed: int) -> dict:
    path = str(DATA / "breastmnist.npz")
    data = load_data(path)
    out = Path(tempfile.mkdtemp(prefix=f"zoo-{method}-"))
    start = time.perf_counter()
    checkpoint = "scratch"
    if method != "scratch":
        pretrain(PretrainConfig(data=path, out=str(out / "pre"), method=method, epochs=epochs, batch_size=64,
                                seed=seed, **BACKBONE), data=data, progress=False)
        checkpoint = str(out / "pre")
    result = finetune(FinetuneConfig(data=path, out=str(out / "ft"), checkpoint=checkpoint, label_fraction=0.1,
                                     epochs=finetune_epochs, seed=seed, **BACKBONE), data=data, progress=False)
    test = result.metrics["test"]
    return {"method": method, "test_auc": round(test["auc"], 4), "balanced_acc": round(test["balanced_acc"], 4),
            "minority_recall": round(test["per_class_recall"][0], 4),
            "minutes": round((time.perf_counter() - start) / 60, 2)}


def cli_one_epoch(method: str, data: Path, batch: int, pool: str = "train") -> dict:
    """The command line as a user runs it, one epoch: exit code, wall time and the final loss."""
    out = Path(tempfile.mkdtemp(prefix=f"cli-{method}-")) / "run"
    command = [sys.executable, "-m", "medssl.cli", "pretrain", "--data", str(data), "--method", method,
               "--epochs", "1", "--batch-size", str(batch), "--backbone", BACKBONE["backbone"],
               "--width", str(BACKBONE["width"]), "--pretrain-splits", pool, "--no-progress", "--out", str(out)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    record = {"method": method, "data": data.name, "pool": pool, "exit": result.returncode,
              "seconds": round(time.perf_counter() - start, 1)}
    if result.returncode == 0:
        record["loss"] = round(json.loads((out / "metrics.json").read_text())["train"]["loss"], 4)
    else:
        record["stderr"] = result.stderr.strip().splitlines()[-1:]
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["throughput", "finetune", "cli"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10, help="pre-training epochs (finetune mode)")
    parser.add_argument("--finetune-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", help="comma-separated subset")
    parser.add_argument("--pool-3d", default="train", help="cli mode: split(s) pre-trained on for the 3D file")
    parser.add_argument("--only", choices=["2d", "3d"], help="cli mode: one of the two files")
    args = parser.parse_args()
    methods = [(n, d) for n, _, d in list_methods() if not args.methods or n in args.methods.split(",")]
    if args.mode == "throughput":
        for name, dims in methods:
            for spatial_dims in dims:
                rate = throughput(name, spatial_dims, args.batch, args.steps)
                print(json.dumps({"method": name, "spatial_dims": spatial_dims, "size": 28, "batch": args.batch,
                                  "images_per_s": round(rate, 1), "threads": torch.get_num_threads()}), flush=True)
    elif args.mode == "cli":
        for data, spatial_dims, pool in ((DATA / "breastmnist.npz", 2, "train"),
                                         (DATA / "adrenalmnist3d.npz", 3, args.pool_3d)):
            if args.only and args.only != f"{spatial_dims}d":
                continue
            for name, dims in methods:
                if spatial_dims in dims:
                    print(json.dumps(cli_one_epoch(name, data, args.batch, pool)), flush=True)
    else:
        for name in ["scratch"] + [n for n, d in methods if 2 in d]:
            print(json.dumps(finetune_at_10_percent(name, args.epochs, args.finetune_epochs, args.seed)), flush=True)


if __name__ == "__main__":
    main()
