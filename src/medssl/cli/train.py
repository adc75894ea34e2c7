"""``medssl pretrain`` and ``medssl finetune``."""

from __future__ import annotations

import argparse

from medssl.cli.args import add_run_options, floats, run_options
from medssl.cli.tasks import add_finetune_tasks, fill_task_defaults, run_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train an encoder with a pretext task")
    add_run_options(p, batch_size="128 for 2D images, 16 for 3D")
    p.add_argument("--method", default="simclr", help="method name, or several joined by '+'")
    p.add_argument("--weights", type=floats, help="loss weights for combined methods, e.g. 1,1,0.5")
    p.add_argument("--pretrain-splits", default="train",
                   help="comma-separated splits whose images form the unlabeled pool (default: train)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (for huge datasets)")
    p.add_argument("--method-args", type=key_values, default={}, metavar="KEY=VALUE,...",
                   help="method hyperparameters, e.g. temperature=0.2,crop_scale=[0.2,1.0] (METHOD.KEY for one "
                        "method of a combination); `medssl methods --args` lists them")
    p.set_defaults(handler=run_pretrain)

    p = sub.add_parser("finetune", help="fine-tune a classifier or segmenter from a pre-trained run or from scratch")
    add_run_options(p, batch_size="64 for 2D images, 16 for 3D; --task segment: 8")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--checkpoint",
                       help="pre-training run directory, model package (medssl export), or 'scratch'")
    start.add_argument("--init", dest="checkpoint", metavar="SCHEME:PATH",
                       help="baseline weights: imagenet:FILE (torchvision ResNet-18/34/50 state_dict, 2D), "
                            "medicalnet:FILE (MedicalNet 3D ResNet), package:DIR")
    p.add_argument("--label-fraction", type=float, default=1.0)
    p.add_argument("--imbalance-ratio", type=float, help="subsample the minority class to 1:RATIO first")
    p.add_argument("--linear-probe", action="store_true",
                   help="freeze the encoder; the head is a convex-solver probe, regularisation chosen on val")
    p.add_argument("--lp-ft", action="store_true", help="linear probe first, then full fine-tuning from that head")
    p.add_argument("--encoder-lr-mult", type=float, default=1.0, help="encoder learning rate = lr x this")
    p.add_argument("--val-labels", default="full",
                   help="full | matched: select on a stratified val subset sized like the labelled set")
    p.add_argument("--augment", help="light | none | flips | rot90 | rotate | scale (the ladder; default light)")
    p.add_argument("--loss", default="ce", help="ce | weighted_ce | focal")
    p.add_argument("--focal-gamma", type=float, default=2.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--mixup-alpha", type=float, default=0.0, help="> 0 enables mixup with Beta(alpha, alpha)")
    p.add_argument("--balanced-sampling", action="store_true", help="draw every class equally often")
    add_finetune_tasks(p)
    p.set_defaults(handler=run_finetune)


def key_values(text: str) -> dict[str, str]:
    """``a=1,b=[0.2,1.0]`` -> {"a": "1", "b": "[0.2,1.0]"}: commas inside brackets belong to the value."""
    pairs, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            pairs.append(text[start:i].strip())
            start = i + 1
    result = {}
    for pair in filter(None, pairs):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE pairs separated by commas, got '{pair}'")
        result[key.strip()] = value.strip()
    return result


def _main_process() -> bool:
    """False in the extra processes of a DDP run (they train, but rank 0 reports)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run_pretrain(args: argparse.Namespace) -> None:
    from medssl import api
    from medssl.config import PretrainConfig

    splits = [s.strip() for s in args.pretrain_splits.split(",") if s.strip()]
    config = PretrainConfig(**run_options(args), method=args.method, weights=args.weights,
                            epochs=args.epochs or 10, pretrain_splits=splits, max_steps=args.max_steps,
                            method_args=args.method_args)
    result = api.pretrain(config, progress=not args.no_progress)
    if _main_process():
        print(f"pre-trained encoder written to {result.run_dir / 'encoder.pt'}")


def run_finetune(args: argparse.Namespace) -> None:
    from medssl import api
    from medssl.config import FinetuneConfig

    fill_task_defaults(args)
    if args.task != "classify":
        return run_task(args.task, args, {**run_options(args), "checkpoint": args.checkpoint, "epochs": args.epochs,
                                          "label_fraction": args.label_fraction, "augment": args.augment})
    config = FinetuneConfig(**run_options(args), checkpoint=args.checkpoint, label_fraction=args.label_fraction,
                            imbalance_ratio=args.imbalance_ratio, linear_probe=args.linear_probe,
                            lp_ft=args.lp_ft, encoder_lr_mult=args.encoder_lr_mult, val_labels=args.val_labels,
                            augment=args.augment, epochs=args.epochs or 20, loss=args.loss,
                            focal_gamma=args.focal_gamma, label_smoothing=args.label_smoothing,
                            mixup_alpha=args.mixup_alpha, balanced_sampling=args.balanced_sampling)
    result = api.finetune(config, progress=not args.no_progress)
    if not _main_process():
        return
    test = result.metrics["test"]
    recall = ", ".join(f"{r:.3f}" for r in test["per_class_recall"])
    print(f"test AUC {test['auc']:.4f}  acc {test['acc']:.4f}  balanced acc {test['balanced_acc']:.4f}"
          f"  per-class recall [{recall}]  ({result.run_dir / 'metrics.json'})")
