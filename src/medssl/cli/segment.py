"""``medssl finetune --task segment``: the segmentation options of ``finetune`` and their handler."""

from __future__ import annotations

import argparse

from medssl.errors import MedsslError

# finetune options whose default differs by task; None on the parser means "the task's default"
TASK_DEFAULTS = {
    "classify": {"backbone": "resnet18", "width": 1.0, "augment": "light"},  # batch size: medssl.memory's default
    "segment": {"batch_size": 8, "backbone": "resnet10", "width": 0.5, "augment": "light"},
}
SEGMENT_ONLY = ("transfer", "label_count", "patch_size", "steps_per_epoch", "mask_suffix", "fov", "channel",
                "val_count", "test_count", "threshold")


def add_segment_options(p: argparse.ArgumentParser) -> None:
    from medssl.cli.tasks import add_finetune_tasks

    add_finetune_tasks(p, skip=("classify", "segment"))
    p.set_defaults(**dict.fromkeys(TASK_DEFAULTS["classify"]))
    g = p.add_argument_group("segmentation (--task segment)")
    g.add_argument("--transfer", choices=("encoder", "decoder", "both", "none"),
                   help="what to take from --checkpoint (default: both if it saved a decoder, else encoder)")
    g.add_argument("--label-count", type=int, help="number of labelled training images (overrides --label-fraction)")
    g.add_argument("--patch-size", type=int, help="training patch / inference window size per axis (default 96)")
    g.add_argument("--steps-per-epoch", type=int, help="patch batches per epoch (default 50)")
    g.add_argument("--mask-suffix", help="mask file name = image name + SUFFIX (default _mask; CHASE_DB1: _1stHO)")
    g.add_argument("--fov", help="field of view: none | threshold | a file suffix of FOV masks (default none)")
    g.add_argument("--channel", choices=("all", "grey", "green"), help="image channels to use (default all)")
    g.add_argument("--val-count", type=int, help="images held out of the training pool for model selection")
    g.add_argument("--test-count", type=int, help="last N images (by name) form the test set (default 30 %%)")
    g.add_argument("--threshold", type=float, help="probability threshold (default: the best on the val images)")


def fill_task_defaults(args: argparse.Namespace) -> None:
    """Put the task's defaults where the user gave no value (tasks from the registry keep their config's);
    reject options of other tasks."""
    for key, value in TASK_DEFAULTS.get(args.task, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.task != "segment":
        given = [f"--{k.replace('_', '-')}" for k in SEGMENT_ONLY if getattr(args, k) is not None]
        if given:
            raise MedsslError(f"{', '.join(given)} only apply to --task segment")
    if args.task != "classify" and (args.linear_probe or args.imbalance_ratio is not None):
        raise MedsslError("--linear-probe and --imbalance-ratio only apply to --task classify")


def run_segment(args: argparse.Namespace) -> None:
    from medssl.api import finetune_segmentation
    from medssl.cli.args import run_options
    from medssl.config import SegmentConfig

    given = {k: getattr(args, k) for k in SEGMENT_ONLY if getattr(args, k) is not None}
    config = SegmentConfig(**run_options(args), checkpoint=args.checkpoint, label_fraction=args.label_fraction,
                           augment=args.augment, epochs=args.epochs or 20, **given)
    result = finetune_segmentation(config, progress=not args.no_progress)
    test = result.metrics["test"]
    print(f"test Dice {test['dice']:.4f}  IoU {test['iou']:.4f}  sensitivity {test['sensitivity']:.4f}"
          f"  specificity {test['specificity']:.4f}  HD95 {test['hd95']:.2f}  ({result.run_dir / 'metrics.json'})")
