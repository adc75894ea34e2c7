"""Issue 14: does `medssl finetune --linear-probe` find the minority class on BreastMNIST?

Pre-trains the `quick` preset's SimCLR encoder (ResNet-10 x0.25, 20 epochs, seed 0) on the BreastMNIST
training images once, then for 1 % and 10 % labels and fine-tuning seeds 0-2 runs `finetune --linear-probe`
(and, with `--lp-ft`, LP-FT with the quick preset's fine-tuning recipe) and, on the same labelled images,
`evaluate`'s convex-solver probe. Prints one JSON line per run: validation / test AUC and minority recall
(argmax, and at the validation-chosen threshold when the run reports it).
Usage: OMP_NUM_THREADS=1 python benchmarks/linear_probe.py [--encoder RUN_DIR] [--lp-ft] [--out DIR]
Run it with another checkout's src on PYTHONPATH to measure that version (fields it lacks are left out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from medssl.api import evaluate, finetune, labelled_subset, pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.sources import load_data
from medssl.evaluate.run import EvaluateConfig
from medssl.study.presets import QuickSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", help="a finished pre-training run dir (default: pre-train the quick one)")
    parser.add_argument("--lp-ft", action="store_true", help="also run LP-FT")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="linear-probe-"))
    s = QuickSettings()
    data = load_data(str(DATA))
    minority = int(np.argmin(data.class_counts("train")))
    common = {"accelerator": "cpu"}
    encoder = args.encoder or str(pretrain(PretrainConfig(
        data=str(DATA), out=str(out / "pre"), method=s.method, backbone=s.backbone, width=s.width,
        epochs=s.pretrain_epochs, batch_size=s.pretrain_batch, lr=s.pretrain_lr, seed=0, **common),
        data=data, progress=False).run_dir)
    modes = {"linear_probe": {"linear_probe": True}}
    if args.lp_ft:
        modes["lp_ft"] = {"lp_ft": True}
    for fraction in (0.01, 0.1):
        for seed in range(3):
            for mode, flags in modes.items():
                config = FinetuneConfig(data=str(DATA), out=str(out / f"{mode}-f{fraction}-s{seed}"),
                                        checkpoint=encoder, label_fraction=fraction, seed=seed,
                                        epochs=s.finetune_epochs, batch_size=s.finetune_batch, lr=s.finetune_lr,
                                        min_samples_per_epoch=s.min_samples_per_epoch, **flags, **common)
                m = finetune(config, data=data, progress=False).metrics
                line = {"mode": mode, "label_fraction": fraction, "seed": seed, "val_auc": m["val"]["auc"],
                        "test_auc": m["test"]["auc"],
                        "minority_recall": m["test"]["per_class_recall"][minority]}
                if "thresholded" in m["test"]:
                    line["minority_recall_thresholded"] = m["test"]["thresholded"]["per_class_recall"][minority]
                print(json.dumps(line), flush=True)
            subset = labelled_subset(data, FinetuneConfig(data="", out="", label_fraction=fraction, seed=seed))
            same = dataclasses.replace(data, splits={**data.splits, "train": data.splits["train"].subset(subset)})
            e = evaluate(EvaluateConfig(checkpoint=encoder, data=str(DATA), protocol="linear", seed=seed,
                                        out=str(out / f"eval-f{fraction}-s{seed}"), device="cpu"), data=same).metrics
            print(json.dumps({"mode": "evaluate_linear", "label_fraction": fraction, "seed": seed,
                              "val_auc": e["val"]["auc"], "test_auc": e["test"]["auc"],
                              "minority_recall": e["test"]["per_class_recall"][minority]}), flush=True)


if __name__ == "__main__":
    main()
