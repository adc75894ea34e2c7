"""Per-arm fine-tuning choices selected on validation only, from a small stated grid.

A study's ``finetune.grid`` (e.g. ``{lr: [1e-3, 3e-4], mode: [full, lp-ft], encoder_lr_mult: [1, 0.1]}``)
is tried in full by every arm, scratch included, so every arm gets the same tuning budget. Each grid
point is a run of its own under the cell's ``grid/`` folder; the point with the best validation score
(AUC; balanced accuracy where AUC is undefined; ties: the earlier point) becomes the cell's result, and the
cell's metrics.json records the grid, every point's validation score and the choice. Test metrics are
never looked at to choose.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

from medssl.errors import MedsslError
from medssl.finetune.predictions import PREDICTIONS_FILE
from medssl.runio import is_complete, write_json

GRID_KEY = "grid"
MODES = {"full": {"lp_ft": False}, "lp-ft": {"lp_ft": True}}  # fine-tuning mode -> FinetuneConfig overrides
GRID_SETTINGS = ("lr", "mode", "encoder_lr_mult")


def check_grid(grid: object) -> dict[str, list]:
    """The grid as {setting: [values]} or a one-line error."""
    if not isinstance(grid, dict) or not grid:
        raise MedsslError(f"finetune grid must be a mapping of {', '.join(GRID_SETTINGS)} to lists of values")
    unknown = set(grid) - set(GRID_SETTINGS)
    if unknown:
        raise MedsslError(f"unknown finetune grid setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(GRID_SETTINGS)}")
    checked: dict[str, list] = {}
    for key in GRID_SETTINGS:
        if key not in grid:
            continue
        values = grid[key] if isinstance(grid[key], list) else [grid[key]]
        if not values or len(set(map(str, values))) != len(values):
            raise MedsslError(f"finetune grid '{key}' must list distinct values, got {grid[key]!r}")
        if key == "mode":
            bad = [v for v in values if v not in MODES]
            if bad:
                raise MedsslError(f"finetune grid mode must be among {', '.join(MODES)}, got {bad[0]!r}")
        elif any(isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in values):
            raise MedsslError(f"finetune grid '{key}' values must be numbers > 0, got {grid[key]!r}")
        checked[key] = values
    return checked


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination, in a fixed order (settings in GRID_SETTINGS order, values as listed)."""
    keys = [k for k in GRID_SETTINGS if k in grid]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: dict) -> dict:
    """A grid point as FinetuneConfig overrides."""
    overrides = {k: v for k, v in point.items() if k != "mode"}
    if "mode" in point:
        overrides.update(MODES[point["mode"]])
    return overrides


def point_name(point: dict) -> str:
    return "-".join(f"{k}{v}" for k, v in point.items()).replace("/", "_")


def validation_score(metrics: dict) -> float:
    val = metrics["val"]
    return val["auc"] if math.isfinite(val["auc"]) else val["balanced_acc"]


def run_grid(run_dir: Path, grid: dict[str, list], run_point: Callable[[dict, Path], dict]) -> dict:
    """Run every grid point (``run_point(overrides, its_run_dir) -> metrics``), keep the best on validation and
    write its metrics (with the selection) and predictions as the cell's own; returns those metrics."""
    points = grid_points(grid)
    scored = []
    for point in points:
        point_dir = run_dir / "grid" / point_name(point)
        metrics = (json.loads((point_dir / "metrics.json").read_text()) if is_complete(point_dir)
                   else run_point(point_overrides(point), point_dir))
        scored.append((validation_score(metrics), point, point_dir, metrics))
    best = max(range(len(scored)), key=lambda i: (scored[i][0], -i))  # ties: the earlier point
    _, chosen, chosen_dir, metrics = scored[best]
    if (chosen_dir / PREDICTIONS_FILE).is_file():
        shutil.copyfile(chosen_dir / PREDICTIONS_FILE, run_dir / f".{PREDICTIONS_FILE}.tmp")
        (run_dir / f".{PREDICTIONS_FILE}.tmp").replace(run_dir / PREDICTIONS_FILE)
    selected = {**metrics, "selection": {**metrics.get("selection", {}), "grid": grid, "chosen": chosen,
                                         "chosen_run": str(chosen_dir),
                                         "total_duration_s": sum(m.get("duration_s") or 0 for *_, m in scored),
                                         "val_score_by_point": [{"point": p, "val_score": s}
                                                                for s, p, _, _ in scored]}}
    write_json(run_dir / "metrics.json", selected)  # last: the cell is complete once this exists
    return selected
