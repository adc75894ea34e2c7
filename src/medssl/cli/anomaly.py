"""``medssl anomaly``: fit on normal images, score test images (options from the registry's anomaly task)."""

from __future__ import annotations

import argparse

from medssl.cli.args import add_config_options, add_progress_option
from medssl.cli.tasks import add_task_options, run_task
from medssl.config import CommonConfig, FinetuneConfig
from medssl.errors import MedsslError
from medssl.tasks.registry import get_task


def register(sub: argparse._SubParsersAction) -> None:
    task = get_task("anomaly")
    p = sub.add_parser("anomaly", help=task.description)
    batch = f"samples per optimizer step (default: {task.config.batch_size})"
    add_config_options(p, CommonConfig, help={"batch_size": batch})
    add_config_options(p, FinetuneConfig, ("epochs", "backbone", "width"), show_defaults=False)  # the task's
    p.add_argument("--checkpoint", required=True,
                   help="pre-training run directory, or 'scratch' (trains --method on the normal images)")
    add_progress_option(p)
    add_task_options(p, task)
    p.set_defaults(handler=run_anomaly)


def run_anomaly(args: argparse.Namespace) -> None:
    if args.normal_class is None:
        raise MedsslError("--normal-class is required (the label(s) of the normal images)")
    run_task("anomaly", args)
