"""``medssl pretrain`` and ``medssl finetune``."""

from __future__ import annotations

import argparse

from medssl.cli.args import add_run_options, floats, run_options
from medssl.cli.tasks import add_finetune_tasks, fill_task_defaults, main_process, run_task


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
    p.add_argument("--label-fraction", type=float, help="fraction of the labelled training images (default 1)")
    p.add_argument("--augment", help="classify/segment: light | none | flips | rot90 | rotate | scale (the ladder; "
                                     "default light); detect: none | flips")
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


def run_pretrain(args: argparse.Namespace) -> None:
    from medssl import api
    from medssl.config import PretrainConfig

    splits = [s.strip() for s in args.pretrain_splits.split(",") if s.strip()]
    config = PretrainConfig(**run_options(args), method=args.method, weights=args.weights,
                            epochs=args.epochs or 10, pretrain_splits=splits, max_steps=args.max_steps,
                            method_args=args.method_args)
    result = api.pretrain(config, progress=not args.no_progress)
    if main_process():
        print(f"pre-trained encoder written to {result.run_dir / 'encoder.pt'}")


def run_finetune(args: argparse.Namespace) -> None:
    fill_task_defaults(args)
    run_task(args.task, args, {**run_options(args), "checkpoint": args.checkpoint, "epochs": args.epochs,
                               "label_fraction": args.label_fraction, "augment": args.augment})
