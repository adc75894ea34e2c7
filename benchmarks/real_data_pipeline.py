"""End-to-end on the real data in ../shared/data: SimCLR pre-train -> fine-tune at 100 % labels.

Prints one JSON line per dataset with test AUC of the SimCLR-initialised and the from-scratch model
(both selected on validation AUC), plus wall time. Usage:
    python benchmarks/real_data_pipeline.py [--epochs 60] [--finetune-epochs 30] [--only breastmnist]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from medssl.api import finetune, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.sources import load_data

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "breastmnist": {"file": "breastmnist.npz", "backbone": "resnet10", "width": 0.5},
    "adrenalmnist3d": {"file": "adrenalmnist3d.npz", "backbone": "resnet10", "width": 0.25},
}


def run(name: str, epochs: int, finetune_epochs: int, fraction: float, seed: int) -> dict:
    spec = DATASETS[name]
    data_path = str(DATA / spec["file"])
    data = load_data(data_path)
    out = Path(tempfile.mkdtemp(prefix=f"medssl-{name}-"))
    started = time.perf_counter()
    pre = pretrain(PretrainConfig(data=data_path, out=str(out / "simclr"), method="simclr", backbone=spec["backbone"],
                                  width=spec["width"], epochs=epochs, batch_size=128, lr=2e-3, seed=seed),
                   data=data, progress=False)
    pretrain_minutes = (time.perf_counter() - started) / 60
    results = {}
    for arm, checkpoint in (("simclr", str(pre.run_dir)), ("scratch", "scratch")):
        ft = finetune(FinetuneConfig(data=data_path, out=str(out / f"ft-{arm}"), checkpoint=checkpoint,
                                     backbone=spec["backbone"], width=spec["width"], epochs=finetune_epochs,
                                     label_fraction=fraction, seed=seed), data=data, progress=False)
        results[arm] = {k: ft.metrics["test"][k] for k in ("auc", "acc", "balanced_acc", "per_class_recall")}
        results[arm]["val_auc"] = ft.metrics["val"]["auc"]
    return {"dataset": name, "label_fraction": fraction, "pretrain_epochs": epochs,
            "finetune_epochs": finetune_epochs, "backbone": f"{spec['backbone']}x{spec['width']}",
            "pretrain_images_per_s": round(pre.metrics["images_per_second"], 1),
            "pretrain_minutes": round(pretrain_minutes, 2),
            "total_minutes": round((time.perf_counter() - started) / 60, 2), **results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=list(DATASETS))
    args = parser.parse_args()
    for name in [args.only] if args.only else list(DATASETS):
        print(json.dumps(run(name, args.epochs, args.finetune_epochs, args.fraction, args.seed)), flush=True)


if __name__ == "__main__":
    main()
