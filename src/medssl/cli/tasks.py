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
    """``int | None`` -> int; ``list[int]`` -> the comma-separated list parser of cli.args."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return LIST_PARSERS[typing.get_args(hint)[0]]
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


def add_finetune_tasks(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """``--task`` with the registry's fine-tuning tasks, and the options of those not in ``skip``."""
    finetune = {name: t for name, t in tasks().items() if t.command == "finetune"}
    listing = "; ".join(f"{name}: {t.description}" for name, t in finetune.items())
    parser.add_argument("--task", default="classify", choices=list(finetune), help=f"the downstream task ({listing})")
    for name, task in finetune.items():
        if name not in skip:
            add_task_options(parser, task)


def registry_options() -> set[str]:
    return {name for t in tasks().values() for name in t.options}


def task_config(task_name: str, args: argparse.Namespace, common: dict) -> object:
    """The task's config from ``common`` (run options) and its own flags; flags of other tasks are an error."""
    task = get_task(task_name)
    own = task.config_fields()
    foreign = sorted(_flag(n) for n in registry_options() - own if getattr(args, n, None) is not None)
    if foreign:
        raise MedsslError(f"{', '.join(foreign)} do not apply to --task {task.name}")
    given = {k: v for k, v in common.items() if k in own and v is not None}
    given |= {n: getattr(args, n) for n in task.options if getattr(args, n, None) is not None}
    return task.config(**given)


def run_task(task_name: str, args: argparse.Namespace, common: dict) -> None:
    task = get_task(task_name)
    config = task_config(task_name, args, common)
    result = task.runner()(config, progress=not args.no_progress)
    print(f"{task.summary(result.metrics['test'])}  ({result.run_dir / 'metrics.json'})")
