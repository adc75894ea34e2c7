"""Task options generated from the registry: each task's ``options`` (config fields) become flags typed by the
config dataclass, defaulting to None ("the task's default"); the chosen task gets a config from the flags given
and rejects flags that belong to other tasks only."""

from __future__ import annotations

import argparse
import types
import typing

from medssl.cli.args import floats, ints, words
from medssl.errors import MedsslError
from medssl.tasks.base import Task
from medssl.tasks.registry import get_task, tasks

LIST_PARSERS = {int: ints, float: floats, str: words}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(hint: object) -> object:
    """``int | None`` -> int; ``list[int]`` / ``list[float]`` / ``list[str]`` -> a comma-separated list parser."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return {int: ints, float: floats, str: words}[typing.get_args(hint)[0]]
    return hint


def add_task_options(parser: argparse.ArgumentParser, task: Task) -> None:
    """One argument group per task; a flag another task already added is shared, not repeated."""
    group = parser.add_argument_group(f"{task.name} (--task {task.name})" if task.command == "finetune"
                                      else f"{task.name} options")
    hints = typing.get_type_hints(task.config)
    for name, text in task.options.items():
        if _flag(name) in parser._option_string_actions:
            continue
        value_type = _value_type(hints[name])
        if value_type is bool:
            group.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(_flag(name), dest=name, type=value_type, default=None, help=text)


def add_finetune_tasks(parser: argparse.ArgumentParser) -> None:
    """``--task`` with the registry's fine-tuning tasks, and their options."""
    finetune = {name: t for name, t in tasks().items() if t.command == "finetune"}
    listing = "; ".join(f"{name}: {t.description}" for name, t in finetune.items())
    parser.add_argument("--task", default="classify", choices=list(finetune), help=f"the downstream task ({listing})")
    for task in finetune.values():
        add_task_options(parser, task)
    parser.set_defaults(backbone=None, width=None)  # None: the chosen task's default


def reject_foreign_options(task_name: str, args: argparse.Namespace) -> None:
    """Flags given that belong to other tasks only are an error, not silently ignored."""
    own = get_task(task_name).config_fields()
    foreign = sorted(_flag(n) for n in registry_options() - own if getattr(args, n, None) is not None)
    if foreign:
        raise MedsslError(f"{', '.join(foreign)} {'is not an option' if len(foreign) == 1 else 'are not options'}"
                          f" of --task {task_name}")


def fill_task_defaults(args: argparse.Namespace) -> None:
    reject_foreign_options(args.task, args)


def registry_options() -> set[str]:
    return {name for t in tasks().values() for name in t.options}


def task_config(task_name: str, args: argparse.Namespace, common: dict) -> object:
    """The task's config from ``common`` (run options) and its own flags; flags of other tasks are an error."""
    task = get_task(task_name)
    reject_foreign_options(task_name, args)
    own = task.config_fields()
    given = {k: v for k, v in common.items() if k in own and v is not None}
    given |= {n: getattr(args, n) for n in task.options if getattr(args, n, None) is not None}
    return task.config(**given)


def main_process() -> bool:
    """False in the extra processes of a DDP run (they train, but rank 0 reports)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run_task(task_name: str, args: argparse.Namespace, common: dict) -> None:
    task = get_task(task_name)
    config = task_config(task_name, args, common)
    result = task.runner()(config, progress=not args.no_progress)
    if main_process():
        print(f"{task.summary(result.metrics['test'])}  ({result.run_dir / 'metrics.json'})")
