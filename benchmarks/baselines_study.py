"""A BreastMNIST study with methods [scratch, imagenet, simclr], the ImageNet arm from a locally built
torchvision-format weights file (random weights here: no download; real use points `inits: {imagenet: ...}` at
torchvision's resnet18 file). Tiny epochs; prints one JSON line per arm and the study's wall time.

    python benchmarks/baselines_study.py [--epochs 2] [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from medssl.study.runner import run_study
from medssl.study.spec import parse_spec

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "resnet18.pth"
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
        spec = parse_spec({
            "name": "baselines", "datasets": [str(DATA)], "methods": ["scratch", "imagenet", "simclr"],
            "inits": {"imagenet": str(weights)}, "backbones": ["resnet18"], "label_fractions": [args.fraction],
            "seeds": 1, "pretrain": {"epochs": args.epochs, "batch_size": 64},
            "finetune": {"epochs": args.epochs, "batch_size": 32, "min_samples_per_epoch": 128},
            "run": {"accelerator": "cpu"},
        })
        start = time.perf_counter()
        outcome = run_study(spec, Path(tmp) / "results.db", Path(tmp) / "runs")
        wall = time.perf_counter() - start
        with sqlite3.connect(Path(tmp) / "results.db") as db:
            rows = db.execute("SELECT method, test_auc, duration_s FROM results WHERE kind = 'finetune'").fetchall()
        for method, auc, duration in sorted(rows):
            print(json.dumps({"method": method, "test_auc": auc, "finetune_s": round(duration, 1)}))
        print(json.dumps({"study_wall_s": round(wall, 1), "failures": outcome.failures, "epochs": args.epochs,
                          "label_fraction": args.fraction, "seed": 0, "machine": "2-core CPU, shared"}))


if __name__ == "__main__":
    main()
