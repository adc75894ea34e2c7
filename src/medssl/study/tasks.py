"""What a study needs of a downstream task beyond its registry entry (``tasks.registry``: config, run function,
primary metric and direction, metric names): where its cells live, which data options its spec section holds,
how its data is loaded once per worker, which result columns a finished run fills, and which per-sample
test outcomes pair its runs. The spec, runner, stats and report call these hooks; none branches on a task.

A task without an entry here gets ``StudyTask(task)``: its registry config and run function, its declared
primary metric (from the run's metrics.json ``test``), intervals over seeds only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medssl.finetune.predictions import PREDICTIONS_FILE
from medssl.tasks.base import Task
from medssl.tasks.registry import get_task

DEFAULT_CROPS = 1024  # pre-training crops of the segmentation training images (upstream: same)


@dataclass(frozen=True)
class ReportColumn:
    """A column of the report's per-arm table: the mean over seeds of a number of each run, or the distinct
    texts (``digits`` None) -- e.g. what was transferred."""

    title: str
    value: Callable[[dict], object]  # a results row -> number | text | None
    digits: int | None = 3


def tested(key: str) -> Callable[[dict], object]:
    """A row's test metric ``key`` (from the run's metrics.json)."""
    return lambda row: json.loads(row.get("metrics") or "{}").get("test", {}).get(key)


def recorded(key: str) -> Callable[[dict], object]:
    """A row's run-level metrics.json entry ``key`` (e.g. what was transferred)."""
    return lambda row: json.loads(row.get("metrics") or "{}").get(key, "–")


@dataclass(frozen=True)
class StudyTask:
    """``prefix``: the run-dir folder of its cells (default: the task's name). ``data_options``: the keys of the
    spec's ``masks:`` section (how the task's data is read; empty: no such section). ``crops``: ``upstream:
    same`` pre-trains on random crops of the task's training images (else ``own_images``, if given, supplies
    the task's unlabelled training images to pre-train on). ``tunable``: ``finetune.grid`` is supported.
    ``arm(method, config)``: config changes of a not-pretrained arm (scratch, a baseline) or a pre-trained one.
    ``load_data(config, cache)``: the data the run function takes (None: the run loads it). ``columns(metrics,
    data)``: the ``results`` columns a finished run fills besides the common ones; ``metric_column`` the one
    holding the primary metric ('' : read from ``metric_values``). ``outcomes``: the kind of per-sample test
    outcome that pairs two runs on the same test samples (``study.stats.OUTCOME_LOADERS``; '' : intervals over
    seeds only). ``report_columns``: what the report's per-arm table shows besides the primary metric."""

    task: Task
    prefix: str = ""
    data_options: tuple[str, ...] = ()
    crops: bool = False
    own_images: Callable[[dict, dict], Any] | None = None
    tunable: bool = False
    arm: Callable[[str, dict], None] | None = None
    load_data: Callable[[dict, dict], Any] | None = None
    columns: Callable[[dict, Any], dict] | None = None
    metric_column: str = ""
    outcomes: str = ""
    report_columns: tuple[ReportColumn, ...] = ()
    pretrain_options: tuple[str, ...] = ()  # finetune settings the task's own images for pre-training depend on
    pretrain_pool: str = ""  # what ``upstream: same`` pre-trains on, in words (the report's protocol)
    selection: str = ""  # what is chosen on which data, in words (default: epoch and threshold on validation)
    predictions_file: str = ""  # the run's per-sample predictions file the results row points at

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
        row = {"n_labelled": metrics.get("train", {}).get("n")}
        if self.columns is not None:
            row.update(self.columns(metrics, data))
        return row


# --- classification ------------------------------------------------------------------------------------------
DATA_OPTIONS = ("spacing", "intensity", "patch", "slices")  # the run: options that change how images load


def load_images(config: dict, cache: dict) -> Any:
    """The image dataset a config names (cached per load); the ``run:`` data options apply as the training
    config reads them."""
    from medssl.config import CommonConfig
    from medssl.data.sources import load_data

    options = CommonConfig(data=config["data"], out="", **{k: config.get(k) for k in DATA_OPTIONS})
    key = (config["data"], config.get("size"), *(str(config.get(k)) for k in DATA_OPTIONS))
    if key not in cache:
        cache[key] = load_data(config["data"], size=config.get("size"), preprocessing=options.preprocessing(),
                               sampling=options.sampling())
    return cache[key]


def _classify_columns(metrics: dict, data: Any) -> dict:
    counts = data.class_counts("train")
    minority = min(range(data.num_classes), key=lambda c: (counts[c], c))
    test = metrics["test"]
    thresholded = test.get("thresholded", {}).get("per_class_recall")
    return {"test_auc": test["auc"], "minority_class": minority,
            "minority_recall": test["per_class_recall"][minority],
            "minority_recall_thresholded": None if thresholded is None else thresholded[minority]}


def _generated_seed(config: dict) -> int:
    return config.get("seed", 0) if str(config["data"]).startswith("synthetic:") else 0  # only generators use it


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
    seed = _generated_seed(config)
    key = ("segment", config["data"], config.get("size"), seed, tuple(sorted(options.items())))
    if key not in cache:
        cache[key] = load_seg_data(config["data"], seed=seed, size=config.get("size"), **options)
    return cache[key]


def _segment_columns(metrics: dict, data: Any) -> dict:
    return {"test_dice": metrics["test"]["dice"]}


# --- detection and anomaly detection -------------------------------------------------------------------------
def det_data(config: dict, cache: dict) -> Any:
    from medssl.tasks.detect.data import load_detection_data

    key = ("detect", config["data"], config.get("size"), _generated_seed(config))
    if key not in cache:
        cache[key] = load_detection_data(config["data"], seed=_generated_seed(config), size=config.get("size"))
    return cache[key]


def _det_images(config: dict, cache: dict) -> Any:
    """The detection training images, unlabelled (no box is read into the pre-training pool)."""
    data = det_data(config, cache)
    return _unlabelled(f"{data.name}:train", data.splits["train"].images, data.spatial_dims)


def anomaly_data(config: dict, cache: dict) -> Any:
    from medssl.tasks.anomaly.data import load_anomaly_data

    normal = tuple(config.get("normal_class") or ())
    key = ("anomaly", config["data"], config.get("size"), _generated_seed(config), normal)
    if key not in cache:
        cache[key] = load_anomaly_data(config["data"], list(normal), seed=_generated_seed(config),
                                       size=config.get("size"))
    return cache[key]


def _normal_images(config: dict, cache: dict) -> Any:
    """The normal training images only: what an anomaly detector may see before it is tested."""
    data = anomaly_data(config, cache)
    return _unlabelled(f"{data.name}:normal", data.normal_train, data.spatial_dims)


def _unlabelled(name: str, images: np.ndarray, spatial_dims: int) -> Any:
    from medssl.data.dataset import UNLABELED, ImageData, Split

    return ImageData(name, {"train": Split(images, np.full(len(images), UNLABELED, np.int64))}, spatial_dims, 1)


def _pretrained_as_is(method: str, config: dict) -> None:
    """``finetune.epochs`` trains the scratch auto-encoder on the normal images; a pre-trained model (already
    fitted to the normal training images when ``upstream: same``) is scored as it is."""
    from medssl.study.axes import NOT_PRETRAINED

    if method not in NOT_PRETRAINED:
        config["epochs"] = 0


# --- the adapters --------------------------------------------------------------------------------------------
ADAPTERS: dict[str, dict] = {
    "classify": {"prefix": "finetune", "tunable": True, "load_data": load_images, "columns": _classify_columns,
                 "predictions_file": PREDICTIONS_FILE,
                 "metric_column": "test_auc", "outcomes": "predictions",
                 "report_columns": (ReportColumn("minority recall mean", lambda r: r.get("minority_recall")),)},
    "segment": {"data_options": MASK_KEYS, "crops": True, "arm": _segment_arm, "load_data": seg_data,
                "pretrain_pool": "random crops of the segmentation training images",
                "columns": _segment_columns, "metric_column": "test_dice", "outcomes": "per_image",
                "report_columns": (ReportColumn("transfer", recorded("transfer"), None),
                                   *(ReportColumn(f"{k} mean", tested(k), d)
                                     for k, d in (("iou", 3), ("sensitivity", 3), ("specificity", 3), ("hd95", 1))))},
    "detect": {"load_data": det_data, "own_images": _det_images,
               "pretrain_pool": "the detection training images, without their boxes",
               "selection": "the best epoch is chosen on validation AP@IoU0.1",
               "report_columns": (ReportColumn("transfer", recorded("transfer"), None),
                                  ReportColumn("AP@IoU0.5 mean", tested("map_iou50")),
                                  ReportColumn("FROC CPM mean", tested("froc_cpm")),
                                  ReportColumn("trivial AP@IoU0.1", lambda r: json.loads(
                                      r.get("metrics") or "{}").get("trivial_predictor", {}).get("map_iou10")))},
    "anomaly": {"load_data": anomaly_data, "own_images": _normal_images, "arm": _pretrained_as_is,
                "outcomes": "scores", "pretrain_options": ("normal_class",),
                "pretrain_pool": "the normal training images only",
                "selection": "nothing is selected: each model is fitted on the normal training images only and "
                             "scored once",
                "report_columns": (ReportColumn("scorer", recorded("primary_scorer"), None),
                                   ReportColumn("AUPRC mean", tested("auprc")))},
}


def study_task(name: str | None) -> StudyTask:
    """The study adapter of a registered task (a one-line MedsslError naming the tasks otherwise)."""
    task = get_task(name or "classify")
    return StudyTask(task, **ADAPTERS.get(task.name, {}))
