"""Issue 8 end to end through the CLI on ../shared/data/breastmnist.npz: SimCLR pre-training, fine-tuning
(SimCLR and scratch), then `medssl evaluate` with every protocol against a random-init encoder.

Prints JSON lines: kNN and linear-probe AUC (SimCLR vs random init), retrieval recall@5 / mAP@5, the
fine-tuned classifiers' robustness table (mean AUC drop per corruption over severities 1-5) and ECE before /
after temperature scaling. Usage (one thread, ~15-20 min on 2 CPU cores):
    OMP_NUM_THREADS=1 python benchmarks/evaluation.py [--epochs 30] [--finetune-epochs 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from medssl.cli import main as cli

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
BACKBONE = ["--backbone", "resnet10", "--width", "0.5"]


def medssl(*args: str) -> None:
    code = cli([*args])
    if code != 0:
        raise SystemExit(f"medssl {' '.join(args)} failed with exit code {code}")


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="breastmnist.npz (default: ../shared/data)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="medssl-evaluation-"))
    data, seed = str(args.data), str(args.seed)
    common = ["--data", data, "--seed", seed, "--accelerator", "cpu", "--no-progress"]
    started = time.perf_counter()

    medssl("pretrain", *common, *BACKBONE, "--method", "simclr", "--epochs", str(args.epochs), "--batch-size", "128",
           "--lr", "2e-3", "--out", str(out / "simclr"))
    pretrain_minutes = (time.perf_counter() - started) / 60
    for arm, checkpoint in (("simclr", str(out / "simclr")), ("scratch", "scratch")):
        medssl("finetune", *common, *BACKBONE, "--checkpoint", checkpoint, "--epochs", str(args.finetune_epochs),
               "--out", str(out / f"ft-{arm}"))

    evaluation = ["--data", data, "--seed", seed, "--device", "cpu", *BACKBONE]
    frozen: dict = {}
    for protocol in ("knn", "linear"):
        for arm, checkpoint in (("simclr", str(out / "simclr")), ("random", "random")):
            run = out / f"eval-{protocol}-{arm}"
            extra = ["--robustness", "--map"] if protocol == "knn" else ["--calibration"]
            medssl("evaluate", *evaluation, "--checkpoint", checkpoint, "--protocol", protocol, "--k", "20",
                   *extra, "--out", str(run))
            m = metrics(run)
            frozen.setdefault(protocol, {})[arm] = {
                "test_auc": round(m["test"]["auc"], 4), "val_auc": round(m["val"]["auc"], 4),
                "test_balanced_acc": round(m["test"]["balanced_acc"], 4),
                "recall@5": round(m["retrieval"]["recall@5"], 4), "map@5": round(m["retrieval"]["map@5"], 4),
                **({"mean_auc_drop_under_corruption": round(m["robustness"]["mean_auc_drop"], 4)}
                   if "robustness" in m else {}),
                **({"linear_c": m["linear"]["c"]} if protocol == "linear" else {}),
            }
    print(json.dumps({"dataset": "breastmnist", "pretrain_epochs": args.epochs, "backbone": "resnet10x0.5",
                      "pretrain_minutes": round(pretrain_minutes, 2), **frozen}), flush=True)

    for arm in ("simclr", "scratch"):
        run = out / f"eval-finetune-{arm}"
        medssl("evaluate", *evaluation, "--checkpoint", str(out / f"ft-{arm}"), "--protocol", "finetune",
               "--robustness", "--calibration", "--out", str(run))
        m = metrics(run)
        table = m["robustness"]
        print(json.dumps({
            "finetuned": arm, "finetune_epochs": args.finetune_epochs, "test_auc": round(m["test"]["auc"], 4),
            "recall@5": round(m["retrieval"]["recall@5"], 4),
            "ece_before": round(m["calibration"]["before"]["ece"], 4),
            "ece_after": round(m["calibration"]["after"]["ece"], 4),
            "nll_before": round(m["calibration"]["before"]["nll"], 4),
            "nll_after": round(m["calibration"]["after"]["nll"], 4),
            "temperature": round(m["calibration"]["temperature"], 3),
            "mean_auc_drop": {name: round(c["mean_auc_drop"], 4) for name, c in table["corruptions"].items()},
            "auc_at_severity": {name: [round(c["severity"][str(s)]["auc"], 3) for s in table["severities"]]
                                for name, c in table["corruptions"].items()},
            "all_corruptions_mean_auc_drop": round(table["mean_auc_drop"], 4),
        }), flush=True)
    print(json.dumps({"total_minutes": round((time.perf_counter() - started) / 60, 2), "runs": str(out)}), flush=True)


if __name__ == "__main__":
    main()
