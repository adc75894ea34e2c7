"""CHASE_DB1 vessel segmentation: from scratch vs Models Genesis pre-training (encoder + decoder transfer).

Images 01-10 (20) are the training pool, 11-14 (8) the test set (the usual split); 10L/10R are held out
of the training pool for model selection, so "all" labels means 18 labelled images. Images are resized to
480 px (green channel), the FOV is derived by thresholding; test Dice is computed at the ORIGINAL
960x999 resolution inside the FOV (probabilities interpolated back). Genesis pre-trains on random 96 px
crops of the 20 training-pool images only (no test image is seen).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/segmentation_chasedb1.py [--quick] [--out DIR]
        [--epochs 20 --steps 60] [--pretrained DIR_OF_A_FINISHED_GENESIS_RUN]

The probability threshold is chosen on the two validation images (0.3-0.8), never on test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from medssl.api import pretrain
from medssl.config import PretrainConfig, SegmentConfig
from medssl.data.masks import load_seg_data, random_patches
from medssl.finetune.segmentation_run import finetune_segmentation

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chasedb1"
SIZE, PATCH, WIDTH = 480, 96, 0.25


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/medssl_chase")
    parser.add_argument("--quick", action="store_true", help="a few steps only, to check the pipeline")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs of --steps patch batches")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pretrained", help="reuse this finished genesis run instead of pre-training")
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="Genesis epochs of 1,600 crops (100 steps)")
    parser.add_argument("--counts", default="4,18", help="labelled-image counts to compare")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.counts.split(",")]
    out = Path(args.out)
    epochs, steps, pre_epochs, n_patches = ((2, 5, 1, 64) if args.quick
                                            else (args.epochs, args.steps, args.pretrain_epochs, 1600))

    start = time.perf_counter()
    data = load_seg_data(args.data, size=SIZE, mask_suffix="_1stHO", fov="threshold", channel="green",
                         val_count=2, test_count=8)
    print(f"loaded in {time.perf_counter() - start:.0f} s: train {len(data.splits['train'])}, "
          f"val {data.splits['val'].names}, test {len(data.splits['test'])}", flush=True)

    pool = random_patches(data, PATCH, n_patches, seed=0, splits=("train", "val"))
    pre_dir = Path(args.pretrained) if args.pretrained else out / "genesis"
    if not (pre_dir / "metrics.json").is_file():
        t = time.perf_counter()
        pretrain(PretrainConfig(data="chasedb1-train-patches", out=str(pre_dir), method="genesis", backbone="resnet10",
                                width=WIDTH, epochs=pre_epochs, batch_size=16, accelerator="cpu", overwrite=True),
                 data=pool, progress=False)
        print(f"genesis pre-training: {time.perf_counter() - t:.0f} s", flush=True)

    common = {"data": args.data, "size": SIZE, "mask_suffix": "_1stHO", "fov": "threshold", "channel": "green",
              "val_count": 2, "test_count": 8, "backbone": "resnet10", "width": WIDTH, "patch_size": PATCH,
              "batch_size": 8, "epochs": epochs, "steps_per_epoch": steps, "accelerator": "cpu",
              "overwrite": True}
    arms = [(arm, count) for count in counts for arm in ("scratch", "genesis")]
    results = {}
    for arm, count in arms:
        checkpoint = "scratch" if arm == "scratch" else str(pre_dir)
        transfer = None if arm == "scratch" else "both"
        t = time.perf_counter()
        result = finetune_segmentation(SegmentConfig(**common, out=str(out / f"{arm}_{count}"), checkpoint=checkpoint,
                                                     transfer=transfer, label_count=count), data=data, progress=False)
        test = result.metrics["test"]
        results[f"{arm}_{count}"] = {"labelled": count, **test, "best_epoch": result.metrics["best_epoch"],
                                     "val_dice": result.metrics["val"], "threshold": result.metrics["threshold"],
                                     "seconds": time.perf_counter() - t}
        print(f"{arm:8s} {count:2d} labelled: test Dice {test['dice']:.4f}  IoU {test['iou']:.4f}  "
              f"sens {test['sensitivity']:.4f}  spec {test['specificity']:.4f}  HD95 {test['hd95']:.1f} px  "
              f"(val Dice {result.metrics['val']:.4f} at 480 px, threshold {result.metrics['threshold']}, "
              f"{time.perf_counter() - t:.0f} s)", flush=True)
        (out / "summary.json").write_text(json.dumps(results, indent=2))
    for count in counts:
        gain = results[f"genesis_{count}"]["dice"] - results[f"scratch_{count}"]["dice"]
        print(f"{count} labelled: pretrained - scratch = {gain:+.4f} Dice")


if __name__ == "__main__":
    main()
