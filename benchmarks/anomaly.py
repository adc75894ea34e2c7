"""Anomaly detection AUROC per scorer: pretext methods pre-trained on all training images (the unlabeled pool,
anomalies included, as self-supervised pre-training meets it) vs an autoencoder trained from scratch on the
normal training images only, inside the anomaly run; on BreastMNIST (normal = normal+benign, label 1;
anomaly = malignant) and on synthetic planted lesions (normal = no lesion). Prints one JSON line per run and a
summary line per dataset and model (mean and sd over seeds).

    python benchmarks/anomaly.py [--seeds 0 1 2] [--epochs 20] [--only breastmnist|planted] [--breastmnist PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from medssl.api import pretrain
from medssl.config import PretrainConfig
from medssl.data.dataset import UNLABELED, ImageData, Split
from medssl.data.planted import make_planted
from medssl.data.sources import load_data
from medssl.tasks.anomaly.config import AnomalyConfig
from medssl.tasks.anomaly.data import load_anomaly_data
from medssl.tasks.anomaly.run import detect_anomalies

BREASTMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
PLANTED = "synthetic:planted2d@32?n=600"
METHODS = ("autoencoder", "genesis", "spark", "simclr")
MODEL = {"backbone": "resnet10", "width": 0.25, "accelerator": "cpu", "lr": 2e-3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", choices=["breastmnist", "planted"])
    parser.add_argument("--breastmnist", type=Path, default=BREASTMNIST, help="default: ../shared/data")
    args = parser.parse_args()
    datasets = {"breastmnist": (str(args.breastmnist), [1]), "planted": (PLANTED, [0])}
    root = Path(tempfile.mkdtemp(prefix="medssl-anomaly-"))
    summary: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for name, (spec, normal) in datasets.items():
        if (args.only and name != args.only) or (name == "breastmnist" and not args.breastmnist.is_file()):
            continue
        for seed in args.seeds:
            data = load_anomaly_data(spec, normal, seed=seed)
            images = load_data(spec).splits["train"].images if name == "breastmnist" else \
                make_planted(2, n=600, size=32, seed=seed)["train"].images
            pool = ImageData(name, {"train": Split(images, np.full(len(images), UNLABELED))}, data.spatial_dims, 1)
            runs = {"scratch_autoencoder": "scratch"}
            for method in METHODS:
                out = root / name / f"{method}-{seed}"
                pretrain(PretrainConfig(data=name, out=str(out), method=method, epochs=args.epochs, batch_size=64,
                                        seed=seed, **MODEL), data=pool, progress=False)
                runs[method] = str(out)
            for model, checkpoint in runs.items():
                start = time.perf_counter()
                result = detect_anomalies(AnomalyConfig(
                    data=spec, out=str(root / name / f"anomaly-{model}-{seed}"), normal_class=normal,
                    checkpoint=checkpoint, epochs=args.epochs if checkpoint == "scratch" else 0, seed=seed,
                    save_maps=False, **MODEL), data=data, progress=False)
                scorers = result.metrics["test"]["scorers"]
                for scorer, values in scorers.items():
                    for key, value in values.items():
                        summary[(name, model, f"{scorer}_{key}")].append(value)
                print(json.dumps({"dataset": name, "seed": seed, "model": model, "epochs": args.epochs,
                                  "n_test": result.metrics["test"]["n"],
                                  "n_anomalous": result.metrics["test"]["n_anomalous"],
                                  **{f"{s}_{k}": round(v, 4) for s, vals in scorers.items() for k, v in vals.items()},
                                  "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    by_model: dict[tuple[str, str], dict] = defaultdict(dict)
    for (name, model, key), values in summary.items():
        by_model[(name, model)][key] = f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"
    for (name, model), values in by_model.items():
        line = {"summary": name, "model": model, "seeds": args.seeds, **values}
        print(json.dumps(line, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    sys.exit(main())
