"""Task name -> ``Task``. A fifth task is one new package ``tasks/<name>/`` defining ``TASK`` (see
``tasks.base.Task``) plus its name in ``PACKAGES``; the API, the CLI and studies then find it here."""

from __future__ import annotations

import importlib

from medssl.errors import MedsslError
from medssl.tasks.base import Task

PACKAGES = ("classify", "segment", "detect", "anomaly")
_TASKS: dict[str, Task] = {}


def tasks() -> dict[str, Task]:
    """Every registered task, in ``PACKAGES`` order."""
    if not _TASKS:
        for package in PACKAGES:
            task = importlib.import_module(f"medssl.tasks.{package}").TASK
            if task.name in _TASKS:
                raise ValueError(f"task '{task.name}' registered twice")
            _TASKS[task.name] = task
    return _TASKS


def get_task(name: str) -> Task:
    known = tasks()
    if name not in known:
        raise MedsslError(f"unknown task '{name}'; choose from {', '.join(known)}")
    return known[name]


def task_names(command: str | None = None) -> list[str]:
    return [name for name, task in tasks().items() if command is None or task.command == command]
