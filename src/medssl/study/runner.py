"""Run a study: expand the spec into cells, then workers claim and run cells until none is left.

Each (upstream data, method, backbone, pre-training seed) is pre-trained once, as a cell of its own; every
fine-tuning cell that needs that encoder waits for it and starts from its run dir. Finished cells are skipped
on a re-run; a cell whose worker was killed is claimed again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from medssl import __version__
from medssl.config import PretrainConfig
from medssl.data.dataset import ImageData
from medssl.data.masks import random_patches
from medssl.errors import MedsslError
from medssl.runio import is_complete
from medssl.study.axes import BASELINES, NOT_PRETRAINED, SAME, Backbone, axes
from medssl.study.spec import StudySpec
from medssl.study.stats import task_metric
from medssl.study.store import Cell, Heartbeat, Store
from medssl.study.tasks import DEFAULT_CROPS, load_images, seg_data, study_task
from medssl.study.tuning import GRID_KEY, check_grid, point_overrides, run_grid

POLL_S = 2.0
TASK_IMAGES = "task_images"  # a pre-training cell's key: pre-train on a task's own training images (upstream: same)


def _slug(text: str) -> str:
    path = Path(text)
    name = path.stem if path.suffix else path.name or text
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "data"


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def plan(spec: StudySpec, runs_dir: str | Path) -> list[Cell]:
    """Every cell of the grid (the product of ``study.axes``): pre-training cells first (each once), then
    fine-tuning cells. A level maps onto a cell's config through its axis, when the task's config has the
    axis' fields; every level labels the cell and names it."""
    runs_dir = Path(runs_dir).resolve()
    task = spec.study_task
    config_fields = task.config_fields()
    common = {"size": spec.size, **spec.run}
    pre_settings = {k: v for k, v in spec.pretrain.items() if k not in ("seed", "crops")}
    pre_seed = spec.pretrain.get("seed", SAME)
    grid_axes = axes()
    pretrains: dict[str, Cell] = {}
    finetunes: list[Cell] = []

    def pretrain_cell(upstream: str, method: str, backbone: Backbone, seed: int, on_task_data: bool,
                      point: dict) -> str:
        config = {"data": upstream, "method": method, "backbone": backbone.name, "width": backbone.width,
                  "seed": seed, **common, **pre_settings}
        shaping = [(axis, point[axis.name]) for axis in grid_axes if axis.pretrain is not None]
        for axis, level in shaping:  # axes that change the encoder (none of the built-in ones)
            config.update(axis.pretrain(level))
        if spec.method_args.get(method):  # only when given: cells of studies without method_args keep their keys
            config["method_args"] = spec.method_args[method]
        if on_task_data and task.crops:  # pre-train on crops of the task's training images (no mask is read)
            config["crops"] = {"n": spec.pretrain.get("crops", DEFAULT_CROPS),
                               "patch": spec.finetune.get("patch_size", task.task.config.patch_size),
                               **spec.masks}
        elif on_task_data and task.own_images is not None:  # the task's own (unlabelled) training images
            config[TASK_IMAGES] = {"task": task.name, **{k: spec.finetune[k] for k in task.pretrain_options
                                                          if k in spec.finetune}}
        tags = [axis.tag(level) for axis, level in shaping if axis.tag is not None]
        name = "-".join([method, backbone.label, f"s{seed}", *tags, _digest(config)])
        key = f"pretrain/{_slug(upstream)}/{name}"
        labels = {"dataset": upstream, "method": method, "backbone": backbone.label, "width": backbone.width,
                  "seed": seed, **{k: v for axis, level in shaping for k, v in axis.labels(level).items()}}
        pretrains.setdefault(key, Cell(key, "pretrain", None, config, labels, str(runs_dir / key), 0))
        return key

    for levels in itertools.product(*(spec.levels[axis.key] for axis in grid_axes)):
        point = {axis.name: level for axis, level in zip(grid_axes, levels, strict=True)}
        dataset, upstream, method, seed = point["dataset"], point["upstream"], point["method"], point["seed"]
        if method in NOT_PRETRAINED and upstream != spec.upstream[0]:
            continue  # scratch and the baselines have no upstream: one arm per downstream dataset
        up = dataset if upstream == SAME else upstream
        depends = None if method in NOT_PRETRAINED else pretrain_cell(
            up, method, point["backbone"], seed if pre_seed == SAME else pre_seed, upstream == SAME, point)
        config = {**common, **spec.finetune, **spec.masks}
        labels: dict = {}
        for axis, level in zip(grid_axes, levels, strict=True):
            labels.update(axis.labels(level))
            if axis.applies(config_fields):
                config.update({k: v for k, v in axis.config(level).items() if k in config_fields})
        labels.update(upstream="-" if method in NOT_PRETRAINED else up, task=spec.task)
        if task.arm is not None:
            task.arm(method, config)
        if method in BASELINES:
            config["checkpoint"] = f"{method}:{spec.inits[method]}"
        tags = [axis.tag(level) for axis, level in zip(grid_axes, levels, strict=True) if axis.tag is not None]
        name = "-".join([*tags, _digest({**config, "pretrain": depends})])
        key = f"{task.cell_prefix}/{_slug(dataset)}/{name}"
        finetunes.append(Cell(key, "finetune", depends, config, labels, str(runs_dir / key), 0))
    cells = [*pretrains.values(), *finetunes]
    for seq, cell in enumerate(cells):
        cell.seq = seq
    return cells


@dataclass
class StudyOutcome:
    spec_hash: str
    counts: dict[str, int]
    failures: list[tuple[str, str]]
    minutes: float


def run_study(spec: StudySpec, db: str | Path, runs_dir: str | Path, *, workers: int = 1,
              progress: bool = False, lease_s: float = 120.0) -> StudyOutcome:
    """Run (or resume) every cell of ``spec``; results land in the SQLite database ``db``."""
    if workers < 1:
        raise MedsslError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    cache: dict[tuple, ImageData] = {}
    store = register_study(spec, db, runs_dir, lease_s=lease_s, cache=cache)
    try:
        counts = store.counts(spec.hash)
        print(f"study {spec.name} ({spec.hash}): {sum(counts.values())} cells, {counts.get('done', 0)} already done;"
              f" {workers} worker(s)", file=sys.stderr)
        if workers == 1:
            work(db, spec.hash, progress=progress, lease_s=lease_s, cache=cache)
        else:
            context = multiprocessing.get_context("spawn")
            threads = max(1, (os.cpu_count() or 1) // workers)
            procs = [context.Process(target=_worker_process, args=(str(db), spec.hash, lease_s, threads))
                     for _ in range(workers)]
            for proc in procs:
                proc.start()
            try:
                with _sigterm_as_exit():
                    for proc in procs:
                        proc.join()
            finally:  # stopped (SIGTERM, Ctrl-C): stop the workers too; their cells are reclaimed on a re-run
                for proc in procs:
                    if proc.is_alive():
                        proc.terminate()
                for proc in procs:
                    proc.join()
        outcome = StudyOutcome(spec.hash, store.counts(spec.hash), store.failures(spec.hash),
                               (time.perf_counter() - started) / 60)
    finally:
        store.close()
    return outcome


def register_study(spec: StudySpec, db: str | Path, runs_dir: str | Path, *, lease_s: float = 120.0,
                   cache: dict | None = None) -> Store:
    """Check the data (bad data fails here, before the database is touched), then add the study's cells to
    ``db``; returns the open store."""
    cache = {} if cache is None else cache
    task = spec.study_task
    for dataset in spec.datasets:
        config = {"data": dataset, "size": spec.size, **spec.run, **spec.finetune, **spec.masks,
                  "seed": spec.seeds[0]}
        data = task.load_data(config, cache) if task.load_data is not None else None
        train = len(data.splits["train"]) if data is not None and hasattr(data, "splits") else None
        if spec.label_counts and train is not None and max(spec.label_counts) > train:
            raise MedsslError(f"label count {max(spec.label_counts)} exceeds the {train} training images of "
                              f"{dataset}")
    for upstream in spec.upstream:
        if upstream != SAME:
            load_images({"data": upstream, "size": spec.size, **spec.run}, cache)
    store = Store(db, lease_s=lease_s)
    try:
        store.register(spec.hash, spec.name, spec.to_dict(), plan(spec, runs_dir))
    except BaseException:
        store.close()
        raise
    return store


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) raises SystemExit here, so the caller's cleanup runs; outside the main
    thread signals cannot be handled and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_process(db: str, spec_hash: str, lease_s: float, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    work(db, spec_hash, progress=False, lease_s=lease_s)


def work(db: str | Path, spec_hash: str, *, progress: bool = False, lease_s: float = 120.0,
         cache: dict | None = None, run_cell: Callable[..., dict] | None = None) -> int:
    """One worker: claim a runnable cell, run it (``run_cell``, default ``execute``), record it; wait while others
    hold the rest. Returns cells run."""
    worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    run_cell = execute if run_cell is None else run_cell
    store = Store(db, create=False, lease_s=lease_s)
    cache = {} if cache is None else cache
    ran = 0
    try:
        while True:
            cell = store.claim(spec_hash, worker)
            if cell is None:
                counts = store.counts(spec_hash)
                if counts.get("pending", 0) + counts.get("running", 0) == 0:
                    return ran
                time.sleep(POLL_S)  # another worker holds a pre-training this cell needs, or the last cells
                continue
            started = time.time()
            try:
                with Heartbeat(db, worker, cell.key, every_s=max(0.5, lease_s / 4)):
                    row = run_cell(cell, store, cache, progress=progress)
            except Exception as err:  # recorded on the cell; the study goes on with the other cells
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                store.fail(cell.key, worker, f"{type(err).__name__}: {message}")
                print(f"failed {cell.key}: {message}", file=sys.stderr)
                continue
            row.update(cell_key=cell.key, spec_hash=spec_hash, started_at=started, finished_at=time.time(),
                       worker=worker, medssl_version=__version__)
            store.finish(cell.key, row)
            ran += 1
            counts = store.counts(spec_hash)
            metric = task_metric(row.get("task"))
            value = metric.value(row) if row.get("kind") == "finetune" else None
            score = f": test {metric.name} {value:.3f}" if value is not None else ""
            print(f"[{counts.get('done', 0)}/{sum(counts.values())}] {cell.key}{score}"
                  f" ({row['finished_at'] - started:.0f} s)", file=sys.stderr)
    finally:
        store.close()


def _pretraining_data(config: dict, cache: dict) -> ImageData:
    if TASK_IMAGES in config:
        options = {k: v for k, v in config[TASK_IMAGES].items() if k != "task"}
        return study_task(config[TASK_IMAGES]["task"]).own_images({**config, **options}, cache)
    if "crops" not in config:
        return load_images(config, cache)
    seg = seg_data(config, cache)
    patch = min(config["crops"]["patch"], *seg.splits["train"].images.shape[2:])
    # training images only: validation images select the model and threshold, test images score it
    return random_patches(seg, patch, config["crops"]["n"], seed=config["seed"], splits=("train",))


RESULT_LABELS = ("dataset", "upstream", "method", "backbone", "width", "label_fraction", "label_count",
                 "imbalance_ratio", "policy", "seed", "task")  # the labels the results table has columns for


def execute(cell: Cell, store: Store, cache: dict, *, progress: bool = False) -> dict:
    """Run one cell (or adopt its run dir if a killed worker finished it before recording it)."""
    from medssl import api

    run_dir = Path(cell.run_dir)
    if run_dir.exists() and not is_complete(run_dir):
        shutil.rmtree(run_dir)  # left by a killed worker; the runner owns its run dirs
    row = {"kind": cell.kind, **{k: cell.labels.get(k) for k in RESULT_LABELS}, "run_dir": str(run_dir)}
    if cell.kind == "pretrain":
        data = _pretraining_data(cell.config, cache)
        pre_config = PretrainConfig(**{k: v for k, v in cell.config.items() if k not in ("crops", TASK_IMAGES)},
                                    out=str(run_dir))
        if not is_complete(run_dir):
            api.pretrain(pre_config, data=data, progress=progress)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        return {**row, "config": json.dumps(pre_config.to_dict(), sort_keys=True), "metrics": json.dumps(metrics),
                "duration_s": metrics.get("duration_s")}

    task = study_task(cell.labels.get("task"))
    checkpoint = cell.config.get("checkpoint", "scratch")  # a baseline's weights, else scratch
    settings = {k: v for k, v in cell.config.items() if k not in ("checkpoint", GRID_KEY)}
    if cell.depends_on is not None:
        encoder = store.result(cell.depends_on)
        if encoder is None:
            raise MedsslError(f"pre-training cell {cell.depends_on} has no result")
        checkpoint = encoder["run_dir"]
    if "checkpoint" in task.config_fields():
        settings["checkpoint"] = checkpoint
    config = task.make_config({**settings, "out": str(run_dir)})
    row["config"] = json.dumps(config.to_dict(), sort_keys=True)  # every setting, defaults included
    data = task.load_data(cell.config, cache) if task.load_data is not None else None
    if not is_complete(run_dir):
        if GRID_KEY in cell.config:  # every point of the stated grid, the best on validation kept
            run_grid(run_dir, check_grid(cell.config[GRID_KEY]), lambda overrides, out: task.run(
                replace(config, **overrides, out=str(out)), data).metrics)
        else:
            task.run(config, data)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "chosen" in metrics.get("selection", {}):  # the row states the settings that produced its numbers
        chosen = replace(config, **point_overrides(metrics["selection"]["chosen"]))
        row["config"] = json.dumps(chosen.to_dict(), sort_keys=True)
    predictions = str(run_dir / task.predictions_file) if task.predictions_file else None
    return {**row, **task.result_columns(metrics, data), "metrics": json.dumps(metrics),
            "duration_s": metrics.get("duration_s"), "predictions": predictions}
