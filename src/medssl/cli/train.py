"""``medssl pretrain`` and ``medssl finetune``: options generated from ``PretrainConfig`` and the task configs;
``--config FILE`` gives them all from a YAML file (a run's config.yaml re-runs it), options given override it."""

from __future__ import annotations

import argparse
from dataclasses import fields

from medssl.cli.args import (
    add_config_file_option,
    add_config_options,
    add_progress_option,
    config_from_options,
    key_values,  # noqa: F401  (medssl.cli.train.key_values: the method-args parser)
    read_config_file,
)
from medssl.cli.tasks import add_finetune_tasks, main_process, run_task, task_defaults
from medssl.config import CommonConfig, FinetuneConfig, PretrainConfig
from medssl.errors import MedsslError
from medssl.memory import DEFAULT_BATCH_SIZES
from medssl.tasks.registry import tasks

# finetune options every task takes, their defaults the task's own
FINETUNE_OPTIONS = ("label_fraction", "augment", "epochs", "backbone", "width")


def batch_size_help(command: str, task_defaults: dict[str, int] | None = None) -> str:
    """``--batch-size`` help naming the defaults medssl.memory (2D, 3D) and the task configs decide."""
    tasks_part = "; ".join(f"--task {name}: {size}" for name, size in (task_defaults or {}).items())
    return (f"samples per optimizer step, over all DDP processes (default: {DEFAULT_BATCH_SIZES[(command, 2)]} "
            f"for 2D images, {DEFAULT_BATCH_SIZES[(command, 3)]} for 3D{'; ' + tasks_part if tasks_part else ''})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train an encoder with a pretext task")
    add_config_file_option(p)
    add_config_options(p, PretrainConfig, help={"batch_size": batch_size_help("pretrain")})
    add_progress_option(p)
    p.set_defaults(handler=run_pretrain)

    p = sub.add_parser("finetune", help="fine-tune a classifier or segmenter from a pre-trained run or from scratch")
    add_config_file_option(p)
    task_batches = {name: t.config.batch_size for name, t in tasks().items()
                    if t.command == "finetune" and isinstance(t.config.batch_size, int)}
    add_config_options(p, CommonConfig, help={"batch_size": batch_size_help("finetune", task_batches)})
    start = p.add_mutually_exclusive_group()  # one of them, or the --config file's checkpoint
    add_config_options(p, FinetuneConfig, ("checkpoint",), container=start, show_defaults=False)
    start.add_argument("--init", dest="checkpoint", metavar="SCHEME:PATH",
                       help="baseline weights: imagenet:FILE (torchvision ResNet-18/34/50 state_dict, 2D), "
                            "medicalnet:FILE (MedicalNet 3D ResNet), package:DIR")
    texts = {f.name: f.metadata.get("help", "") for f in fields(FinetuneConfig)}
    add_config_options(p, FinetuneConfig, FINETUNE_OPTIONS, help={
        name: f"{texts[name]} (default: {task_defaults(name)})" for name in FINETUNE_OPTIONS})
    add_progress_option(p)
    add_finetune_tasks(p)
    p.set_defaults(handler=run_finetune)


def run_pretrain(args: argparse.Namespace) -> None:
    from medssl import api

    entries = {}
    if args.config:
        kind, entries = read_config_file(args.config)
        if kind not in (None, "pretrain"):
            raise MedsslError(f"{args.config} records a '{kind}' run, not a pre-training run")
    config = config_from_options(args, PretrainConfig, entries)
    result = api.pretrain(config, progress=not args.no_progress)
    if main_process():
        print(f"pre-trained encoder written to {result.run_dir / 'encoder.pt'}")


def task_of_run(kind: str | None, where: str) -> str | None:
    """The fine-tuning task a run's config.yaml ``kind`` names (classification runs record ``finetune``)."""
    if kind is None:
        return None
    task = "classify" if kind == "finetune" else kind
    if task not in tasks() or tasks()[task].command != "finetune":
        raise MedsslError(f"{where} records a '{kind}' run, not a fine-tuning run")
    return task


def run_finetune(args: argparse.Namespace) -> None:
    entries, task = {}, args.task
    if args.config:
        kind, entries = read_config_file(args.config)
        named = entries.pop("task", None)  # a file written by hand may name its task
        task = task or named or task_of_run(kind, args.config)
    if args.checkpoint is None and "checkpoint" not in entries:
        raise MedsslError("one of the arguments --checkpoint --init is required (or checkpoint: in --config)")
    run_task(task or "classify", args, entries)
