"""``Task``: what a downstream task declares so that the API, the CLI and studies can use it without
knowing it. A task package (``tasks/<name>/__init__.py``) defines one ``TASK``; ``tasks.registry`` lists them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from medssl.config import CommonConfig


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Task:
    """``run`` is a ``"module:function"`` path, imported on first use: listing the tasks (the CLI's ``--help``)
    loads no model code.

    ``run(config, progress=...) -> RunResult`` writes a complete run dir whose metrics.json holds the test
    metrics under ``test``; ``primary_metric`` (one of ``metric_names``) is the number studies compare, better
    when higher if ``higher_is_better``. ``options`` are the config fields the task adds to the common ones,
    with their help text (the CLI turns them into flags); ``summary(metrics)`` is the one line a finished run
    prints; studies judge the task by ``primary_metric`` (``primary_label`` in their sentences)."""

    name: str
    description: str
    config: type[CommonConfig]
    run: str
    primary_metric: str
    metric_names: tuple[str, ...]
    primary_label: str = ""  # the primary metric's name in sentences and table headers ("AUC", "Dice")
    higher_is_better: bool = True
    options: dict[str, str] = field(default_factory=dict)
    command: str = "finetune"  # the CLI command that runs it
    summary_format: str = ""  # str.format over the test metrics, e.g. "test Dice {dice:.4f}"

    def __post_init__(self) -> None:
        if self.primary_metric not in self.metric_names:
            raise ValueError(f"task {self.name}: primary metric {self.primary_metric} is not among its metrics")
        known = {f.name for f in fields(self.config)}
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise ValueError(f"task {self.name}: options {unknown} are not fields of {self.config.__name__}")

    def runner(self) -> Callable[..., Any]:
        return _resolve(self.run)

    def summary(self, test_metrics: dict) -> str:
        def show(value: object) -> object:  # a list of numbers (per-class recall) as "0.912, 0.640"
            numbers = isinstance(value, list) and all(isinstance(x, int | float) for x in value)
            return ", ".join(f"{x:.3f}" for x in value) if numbers else value

        shown = {k: show(v) for k, v in test_metrics.items()}
        return self.summary_format.format(**shown) if self.summary_format else ""

    def config_fields(self) -> set[str]:
        return {f.name for f in fields(self.config)}
