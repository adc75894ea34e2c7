"""Task options generated from the registry: each task's ``options`` (config fields) become flags typed by the
config dataclass, defaulting to None ("the task's default"); the chosen task gets a config from its ``--config``
file and the flags given, and rejects flags that belong to other tasks only."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields

from medssl.cli.args import add_field_option, config_from_options, flag, shown_value
from medssl.errors import MedsslError
from medssl.tasks.base import Task
from medssl.tasks.registry import get_task, tasks


def add_task_options(parser: argparse.ArgumentParser, task: Task) -> None:
    """One argument group per task; a flag another task already added is shared, not repeated (its help text
    states the task's default: the tasks' defaults differ)."""
    group = parser.add_argument_group(f"{task.name} (--task {task.name})" if task.command == "finetune"
                                      else f"{task.name} options")
    hints = typing.get_type_hints(task.config)
    for item in fields(task.config):
        if item.name in task.options and flag(item) not in parser._option_string_actions:
            help_text = task.options[item.name]
            shown = option_defaults(item.name, parser_tasks(task))
            if shown and "default" not in help_text:
                help_text += f" (default: {shown})"
            add_field_option(group, item, hints[item.name], help_text, show_default=False)


def parser_tasks(task: Task) -> list[Task]:
    """The tasks whose options share a parser with ``task``'s: every fine-tuning task, or the task alone."""
    if task.command != "finetune":
        return [task]
    return [t for t in tasks().values() if t.command == "finetune"]


def option_defaults(name: str, among: list[Task]) -> str:
    """The dataclass default of option ``name`` in the tasks that offer it: "64", or "classify 512, detect 64"
    (a flag shared by several tasks); "" where none has a default worth stating (None, off, empty)."""
    defaults = {}
    for t in among:
        if name in t.options:
            item = next(f for f in fields(t.config) if f.name == name)
            value = item.default_factory() if callable(item.default_factory) else item.default
            if value not in (None, False, [], {}, ""):
                defaults[t.name] = shown_value(value)
    if len(set(defaults.values())) == 1 and len(defaults) == len([t for t in among if name in t.options]):
        return next(iter(defaults.values()))
    return ", ".join(f"{task} {value}" for task, value in defaults.items())


def add_finetune_tasks(parser: argparse.ArgumentParser) -> None:
    """``--task`` with the registry's fine-tuning tasks, and their options."""
    finetune = {name: t for name, t in tasks().items() if t.command == "finetune"}
    listing = "; ".join(f"{name}: {t.description}" for name, t in finetune.items())
    parser.add_argument("--task", choices=list(finetune),
                        help=f"the downstream task (default: the --config file's, else classify; {listing})")
    for task in finetune.values():
        add_task_options(parser, task)


def task_defaults(name: str) -> str:
    """The default of field ``name`` in each fine-tuning task's config: "20", or "classify 1.0, segment 0.5"."""
    defaults = {task: getattr(t.config, name) for task, t in tasks().items() if t.command == "finetune"}
    if len(set(map(str, defaults.values()))) == 1:
        return str(next(iter(defaults.values())))
    return ", ".join(f"{task} {value}" for task, value in defaults.items())


def reject_foreign_options(task_name: str, args: argparse.Namespace) -> None:
    """Flags given that belong to other tasks only are an error, not silently ignored."""
    own = get_task(task_name).config_fields()
    flags = {item.name: flag(item) for t in tasks().values() for item in fields(t.config)}
    foreign = sorted(flags[n] for n in registry_options() - own if getattr(args, n, None) is not None)
    if foreign:
        raise MedsslError(f"{', '.join(foreign)} {'is not an option' if len(foreign) == 1 else 'are not options'}"
                          f" of --task {task_name}")


def registry_options() -> set[str]:
    return {name for t in tasks().values() for name in t.options}


def task_config(task_name: str, args: argparse.Namespace, file_entries: dict | None = None) -> object:
    """The task's config from the entries of ``--config`` and the options given; options of other tasks only
    are an error."""
    reject_foreign_options(task_name, args)
    return config_from_options(args, get_task(task_name).config, file_entries)


def main_process() -> bool:
    """False in the extra processes of a DDP run (they train, but rank 0 reports)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run_task(task_name: str, args: argparse.Namespace, file_entries: dict | None = None) -> None:
    task = get_task(task_name)
    config = task_config(task_name, args, file_entries)
    result = task.runner()(config, progress=not args.no_progress)
    if main_process():
        print(f"{task.summary(result.metrics['test'])}  ({result.run_dir / 'metrics.json'})")
