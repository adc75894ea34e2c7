"""``medssl anomaly``: fit on normal images, score test images (options from the registry's anomaly task)."""

from __future__ import annotations

import argparse

from medssl.cli.args import add_run_options, run_options
from medssl.cli.tasks import add_task_options, run_task
from medssl.errors import MedsslError
from medssl.tasks.registry import get_task


def register(sub: argparse._SubParsersAction) -> None:
    task = get_task("anomaly")
    p = sub.add_parser("anomaly", help=task.description)
    add_run_options(p, batch_size="64")
    p.set_defaults(backbone=None, width=None)  # None: the task's defaults
    p.add_argument("--checkpoint", required=True,
                   help="pre-training run directory, or 'scratch' (trains --method on the normal images)")
    add_task_options(p, task)
    p.set_defaults(handler=run_anomaly)


def run_anomaly(args: argparse.Namespace) -> None:
    if args.normal_class is None:
        raise MedsslError("--normal-class is required (the label(s) of the normal images)")
    run_task("anomaly", args, {**run_options(args), "checkpoint": args.checkpoint, "epochs": args.epochs})
