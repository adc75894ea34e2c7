"""Lesion detection on synthetic planted lesions, 2D and 3D: a RetinaNet whose backbone is pre-trained (on the
training images, unlabeled) vs from scratch, next to the trivial predictor (one mean training box per image).
Prints one JSON line per run.

    python benchmarks/detection.py [--seeds 0] [--method genesis] [--label-fractions 1.0 0.25] [--only 2d|3d]
                                   [--scratch-only]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from medssl.api import pretrain
from medssl.config import PretrainConfig
from medssl.data.dataset import UNLABELED, ImageData, Split
from medssl.tasks.detect.config import DetectConfig
from medssl.tasks.detect.data import load_detection_data
from medssl.tasks.detect.run import finetune_detection

# (data spec, pre-training epochs, detection epochs)
SETTINGS = {"2d": ("synthetic:boxes2d@32?n=400", 20, 15), "3d": ("synthetic:boxes3d@24?n=120", 10, 20)}
MODEL = {"backbone": "resnet10", "width": 0.25, "accelerator": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--method", default="genesis")
    parser.add_argument("--label-fractions", type=float, nargs="+", default=[1.0])
    parser.add_argument("--only", choices=list(SETTINGS))
    parser.add_argument("--scratch-only", action="store_true", help="no pre-training, no transfer runs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="medssl-detection-"))
    for name, (spec, pre_epochs, epochs) in SETTINGS.items():
        if args.only and name != args.only:
            continue
        for seed in args.seeds:
            data = load_detection_data(spec, seed=seed)
            train = data.splits["train"]
            pool = ImageData(spec, {"train": Split(train.images, np.full(len(train), UNLABELED))}, data.spatial_dims, 1)
            start = time.perf_counter()
            pre = root / f"{name}-{args.method}-{seed}"
            if not args.scratch_only:
                pretrain(PretrainConfig(data=spec, out=str(pre), method=args.method, epochs=pre_epochs, seed=seed,
                                        batch_size=32, lr=2e-3, **MODEL), data=pool, progress=False)
            pre_s = time.perf_counter() - start
            for fraction in args.label_fractions:
                for init in ("scratch",) if args.scratch_only else ("scratch", str(pre)):
                    start = time.perf_counter()
                    result = finetune_detection(DetectConfig(
                        data=spec, out=str(root / f"{name}-{Path(init).name}-{fraction}-{seed}"), checkpoint=init,
                        epochs=epochs, seed=seed, batch_size=8, lr=3e-3, label_fraction=fraction,
                        min_samples_per_epoch=64, save_predictions=False, **MODEL), data=data, progress=False)
                    test, trivial = result.metrics["test"], result.metrics["trivial_predictor"]
                    print(json.dumps({
                        "data": spec, "seed": seed, "init": "scratch" if init == "scratch" else args.method,
                        "label_fraction": fraction, "train_images": result.metrics["train"]["n"],
                        "epochs": epochs, "pretrain_epochs": pre_epochs,
                        **{k: round(test[k], 4) for k in ("map_iou10", "map_iou50", "froc_cpm",
                                                          "sensitivity_at_1_fp")},
                        "val_map_iou10": round(result.metrics["val"]["map_iou10"], 4),
                        "best_epoch": result.metrics["best_epoch"],
                        "trivial_map_iou10": round(trivial["map_iou10"], 4),
                        "trivial_map_iou50": round(trivial["map_iou50"], 4),
                        "seconds": round(time.perf_counter() - start, 1),
                        "pretrain_seconds": round(pre_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
