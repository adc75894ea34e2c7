"""What a study needs of a downstream task beyond its registry entry (``tasks.registry``: config, run function,
primary metric and direction, metric names): where its cells live, which data options its spec section holds,
how its data is loaded once per worker, which result columns a finished run fills, and which per-sample
test outcomes pair its runs. The spec, runner, stats and report call these hooks; none branches on a task.

A task without an entry here gets ``StudyTask(task)``: its registry config and run function, its declared
primary metric (from the run's metrics.json ``test``), intervals over seeds only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medssl.tasks.base import Task
from medssl.tasks.registry import get_task, tasks

DEFAULT_CROPS = 1024  # pre-training crops of the segmentation training images (upstream: same)


@dataclass(frozen=True)
class StudyTask:
    """``prefix``: the run-dir folder of its cells. ``data_options``: the keys of the spec's ``masks:`` section
    (how the task's data is read; empty: no such section). ``crops``: ``upstream: same`` pre-trains on random
    crops of the task's training images. ``tunable``: ``finetune.grid`` is supported. ``arm``: config changes of
    a not-pretrained arm (scratch, a baseline) or a pre-trained one. ``load_data(config, cache)``: the data the
    run function takes (None: the run loads it). ``columns(metrics, data)``: the ``results`` columns a finished
    run fills besides the common ones. ``outcome(row)``: the per-sample test outcome that pairs two runs on the
    same test samples, or None (intervals over seeds only). ``report_metrics``: secondary test metrics shown in
    the report's condition table (name, digits)."""

    task: Task
    prefix: str = ""
    data_options: tuple[str, ...] = ()
    crops: bool = False
    tunable: bool = False
    arm: Callable[[str, dict], None] | None = None
    load_data: Callable[[dict, dict], Any] | None = None
    columns: Callable[[dict, Any], dict] | None = None
    report_metrics: tuple[tuple[str, int], ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def cell_prefix(self) -> str:
        return self.prefix or self.task.name

    def config_fields(self) -> set[str]:
        return self.task.config_fields()

    def make_config(self, settings: dict) -> Any:
        return self.task.config(**settings)

    def run(self, config: Any, data: Any) -> Any:
        """The task's run function on ``config`` (and the preloaded ``data``); returns its ``RunResult``."""
        runner = self.task.runner()
        return runner(config, progress=False) if data is None else runner(config, data=data, progress=False)

    def result_columns(self, metrics: dict, data: Any) -> dict:
        test = metrics.get("test", {})
        primary = test.get(self.task.primary_metric)
        row = {"n_labelled": metrics.get("train", {}).get("n")}
        if self.columns is not None:
            row.update(self.columns(metrics, data))
        return {**row, "primary": None if primary is None else float(primary)}


# --- classification ------------------------------------------------------------------------------------------
def _classify_data(config: dict, cache: dict) -> Any:
    from medssl.study.runner import load_images

    return load_images(config, cache)


def _classify_columns(metrics: dict, data: Any) -> dict:
    from medssl.finetune.predictions import PREDICTIONS_FILE

    counts = data.class_counts("train")
    minority = min(range(data.num_classes), key=lambda c: (counts[c], c))
    test = metrics["test"]
    thresholded = test.get("thresholded", {}).get("per_class_recall")
    return {"test_auc": test["auc"], "minority_class": minority,
            "minority_recall": test["per_class_recall"][minority],
            "minority_recall_thresholded": None if thresholded is None else thresholded[minority],
            "predictions_file": PREDICTIONS_FILE}


# --- segmentation --------------------------------------------------------------------------------------------
MASK_KEYS = ("mask_suffix", "fov", "channel", "val_count", "test_count")


def _segment_arm(method: str, config: dict) -> None:
    from medssl.study.axes import BASELINES, SCRATCH

    if method == SCRATCH:  # nothing to transfer; the same cell as in a study without 'transfer'
        config.pop("transfer", None)
    elif method in BASELINES:  # a baseline brings an encoder only
        config["transfer"] = "encoder"


def seg_data(config: dict, cache: dict) -> Any:
    """Segmentation data of a fine-tuning config or of a pre-training config's ``crops`` (cached per load)."""
    from medssl.data.masks import load_seg_data

    source = config.get("crops", config)  # a pre-training cell keeps the mask options with its crops
    options = {k: source[k] for k in MASK_KEYS if source.get(k) is not None}
    seed = config.get("seed", 0) if config["data"].startswith("synthetic:") else 0  # only generators use it
    key = ("segment", config["data"], config.get("size"), seed, tuple(sorted(options.items())))
    if key not in cache:
        cache[key] = load_seg_data(config["data"], seed=seed, size=config.get("size"), **options)
    return cache[key]


def _segment_columns(metrics: dict, data: Any) -> dict:
    return {"test_dice": metrics["test"]["dice"]}


def _nan_free(value: object) -> float:
    return math.nan if value is None else float(value)


# --- the adapters --------------------------------------------------------------------------------------------
ADAPTERS: dict[str, dict] = {
    "classify": {"prefix": "finetune", "tunable": True, "load_data": _classify_data, "columns": _classify_columns},
    "segment": {"data_options": MASK_KEYS, "crops": True, "arm": _segment_arm, "load_data": seg_data,
                "columns": _segment_columns,
                "report_metrics": (("iou", 3), ("sensitivity", 3), ("specificity", 3), ("hd95", 1))},
}


def study_task(name: str | None) -> StudyTask:
    """The study adapter of a registered task (a one-line MedsslError naming the tasks otherwise)."""
    task = get_task(name or "classify")
    return StudyTask(task, **ADAPTERS.get(task.name, {}))


def study_tasks() -> list[str]:
    return list(tasks())


def row_metrics(row: dict) -> dict:
    return json.loads(row.get("metrics") or "{}")


def run_path(row: dict, name: str) -> Path | None:
    candidate = Path(row.get("run_dir") or "") / name
    return candidate if row.get("run_dir") and candidate.is_file() else None
