"""CHASE_DB1 vessel segmentation: from scratch vs pre-trained (Models Genesis, SparK, ...) U-Nets.

Images 01-10 (20) are the training pool, 11-14 (8) the test set (the usual split); 10L/10R are held out
of the training pool for model selection, so "all" labels means 18 labelled images. Green channel, FOV by
thresholding; test Dice is computed at the ORIGINAL 999x960 resolution inside the FOV (probabilities are
interpolated back when ``--size`` resized the images). Pre-training sees random crops of the 20
training-pool images only (no test image). Each seed draws its own labelled images and initialisation;
the pre-training run of a method is shared by the seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/segmentation_chasedb1.py [--quick] [--out DIR]
        [--arms scratch,genesis] [--counts 4,18] [--seeds 0] [--size 480|0] [--width 0.25]

Every arm writes ``OUT/results/ARM_COUNT_sSEED.json`` and is skipped when that file exists, so several
processes can split the arms (``--arms scratch`` in one, ``--arms genesis`` in another) and a killed run
resumes; the final table pairs every pre-trained arm with scratch on the same seed and count.
The probability threshold is chosen on the two validation images (0.1-0.9), never on test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medssl.api import pretrain
from medssl.config import PretrainConfig, SegmentConfig
from medssl.data.masks import load_seg_data, random_patches
from medssl.tasks.segment.run import finetune_segmentation

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chasedb1"
PATCH = 96


def pretrained_run(method: str, data, out: Path, width: float, epochs: int, n_patches: int) -> Path:
    run = out / f"pretrain_{method}"
    if not (run / "metrics.json").is_file():
        t = time.perf_counter()
        pool = random_patches(data, PATCH, n_patches, seed=0, splits=("train", "val"))
        pretrain(PretrainConfig(data="chasedb1-train-patches", out=str(run), method=method, backbone="resnet10",
                                width=width, epochs=epochs, batch_size=16, accelerator="cpu", overwrite=True),
                 data=pool, progress=False)
        print(f"{method} pre-training: {time.perf_counter() - t:.0f} s", flush=True)
    return run


def summary_table(results: Path, counts: list[int]) -> None:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    arms = sorted({key.split("_")[0] for key in rows} - {"scratch"})
    for count in counts:
        for arm in ["scratch", *arms]:
            dice = [r["dice"] for k, r in rows.items() if k.startswith(f"{arm}_{count}_s")]
            if dice:
                print(f"{count:2d} labelled  {arm:8s} test Dice {np.mean(dice):.4f} ± {np.std(dice):.4f} "
                      f"(n={len(dice)}: {', '.join(f'{d:.4f}' for d in dice)})")
        for arm in arms:
            gains = [r["dice"] - rows[k.replace(arm, "scratch", 1)]["dice"] for k, r in rows.items()
                     if k.startswith(f"{arm}_{count}_s") and k.replace(arm, "scratch", 1) in rows]
            if gains:
                print(f"{count:2d} labelled  {arm} - scratch = {np.mean(gains):+.4f} ± {np.std(gains):.4f} "
                      f"(paired, n={len(gains)}: {', '.join(f'{g:+.4f}' for g in gains)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/medssl_chase")
    parser.add_argument("--quick", action="store_true", help="a few steps only, to check the pipeline")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--arms", default="scratch,genesis", help="scratch and/or pre-training methods")
    parser.add_argument("--counts", default="4,18", help="labelled-image counts to compare")
    parser.add_argument("--seeds", default="0", help="fine-tuning seeds (labelled images + initialisation)")
    parser.add_argument("--size", type=int, default=480, help="resize to this many pixels; 0 keeps 999x960")
    parser.add_argument("--width", type=float, default=0.25, help="ResNet-10 width multiplier")
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs of --steps patch batches")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="pre-training epochs of 1,600 crops")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.counts.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    epochs, steps, pre_epochs, n_patches = ((2, 5, 1, 64) if args.quick
                                            else (args.epochs, args.steps, args.pretrain_epochs, 1600))

    start = time.perf_counter()
    size = args.size or None
    data = load_seg_data(args.data, size=size, mask_suffix="_1stHO", fov="threshold", channel="green",
                         val_count=2, test_count=8)
    print(f"loaded in {time.perf_counter() - start:.0f} s: train {len(data.splits['train'])}, "
          f"val {data.splits['val'].names}, test {len(data.splits['test'])}", flush=True)

    common = {"data": args.data, "size": size, "mask_suffix": "_1stHO", "fov": "threshold", "channel": "green",
              "val_count": 2, "test_count": 8, "backbone": "resnet10", "width": args.width, "patch_size": PATCH,
              "batch_size": 8, "epochs": epochs, "steps_per_epoch": steps, "accelerator": "cpu", "overwrite": True}
    for count in counts:
        for seed in seeds:
            for arm in args.arms.split(","):
                key = f"{arm}_{count}_s{seed}"
                if (results / f"{key}.json").is_file():
                    continue
                checkpoint = "scratch" if arm == "scratch" else str(
                    pretrained_run(arm, data, out, args.width, pre_epochs, n_patches))
                t = time.perf_counter()
                result = finetune_segmentation(SegmentConfig(**common, out=str(out / key), checkpoint=checkpoint,
                                                             seed=seed, label_count=count), data=data, progress=False)
                test = result.metrics["test"]
                row = {"labelled": count, "seed": seed, **test, "best_epoch": result.metrics["best_epoch"],
                       "val_dice": result.metrics["val"], "threshold": result.metrics["threshold"],
                       "transfer": result.metrics["transfer"], "images": result.metrics["train"]["images"],
                       "seconds": time.perf_counter() - t}
                (results / f"{key}.json").write_text(json.dumps(row, indent=2))
                print(f"{key:16s} test Dice {test['dice']:.4f}  IoU {test['iou']:.4f}  sens {test['sensitivity']:.4f}"
                      f"  spec {test['specificity']:.4f}  HD95 {test['hd95']:.1f} px  (val Dice "
                      f"{result.metrics['val']:.4f}, threshold {result.metrics['threshold']}, best epoch "
                      f"{result.metrics['best_epoch']}, {time.perf_counter() - t:.0f} s)", flush=True)
    summary_table(results, counts)


if __name__ == "__main__":
    main()
