"""Study rows -> paired comparisons against ``scratch``, with intervals from ``study.inference``.

Pairs share the seed and hence the same nested labelled subset (and imbalance subsample), so the paired
difference removes the subset's luck. Where both arms of every seed kept per-sample test outcomes
(``predictions.csv`` of a classification run, per-image metrics of a segmentation run), the interval also
carries test-set noise; otherwise it falls back to the seeds alone and says so (``Comparison.note``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from medssl.errors import MedsslError
from medssl.finetune.predictions import PREDICTIONS_FILE
from medssl.study.axes import SCRATCH, condition_keys, pairing_keys
from medssl.study.inference import (
    ALPHA,
    RESAMPLES,
    Difference,
    Predictions,
    Statistic,
    auc_statistic,
    balanced_accuracy_statistic,
    decide,
    delong,
    load_predictions,
    paired_difference,
    recall_statistic,
    seed_only_difference,
    weighted_mean,
)


@dataclass(frozen=True)
class Metric:
    """The score a study's task is judged by: its primary metric (``key`` in the run's metrics.json ``test``),
    its name in sentences, its results column where the table has one (else read from the row's
    ``metric_values``), its direction, and the kind of per-sample test outcome that pairs two runs
    (``study.tasks.StudyTask.outcomes``)."""

    column: str
    name: str
    key: str = ""
    higher_is_better: bool = True
    outcomes: str = ""

    def value(self, row: dict) -> float | None:
        if self.column and row.get(self.column) is not None:
            return row[self.column]
        stored = (row.get("metric_values") or {}).get(f"test.{self.key}")
        if stored is not None:
            return stored
        value = json.loads(row.get("metrics") or "{}").get("test", {}).get(self.key)
        return value if isinstance(value, int | float) else None


AUC = Metric("test_auc", "AUC", "auc", outcomes="predictions")
DICE = Metric("test_dice", "Dice", "dice", outcomes="per_image")
BALANCED_ACCURACY, MINORITY_RECALL = "balanced accuracy", "minority recall"


def task_metric(task: str | None) -> Metric:
    """The study metric of a task: its declared primary metric and direction (``tasks.registry``), read as its
    study adapter says (``study.tasks``)."""
    from medssl.study.tasks import study_task

    adapter = study_task(task)
    declared = adapter.task
    return Metric(adapter.metric_column, declared.primary_label or declared.primary_metric, declared.primary_metric,
                  declared.higher_is_better, adapter.outcomes)


@dataclass
class Estimate:
    n: int
    mean: float
    sd: float
    low: float  # 95 % t interval of the mean over seeds (NaN for fewer than 2 values)
    high: float


def _finite(values: list[float | None]) -> np.ndarray:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def describe(values: list[float | None]) -> Estimate:
    """Mean, sd and the t interval over seeds (a percentile bootstrap of 3 values covers ~0.76, not 0.95)."""
    v = _finite(values)
    if len(v) == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    if len(v) == 1:
        return Estimate(1, float(v[0]), math.nan, math.nan, math.nan)
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.975, len(v) - 1)) * sd / math.sqrt(len(v))
    return Estimate(len(v), float(v.mean()), sd, float(v.mean()) - half, float(v.mean()) + half)


def conditions(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by everything but the seed (insertion order kept)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    keys = condition_keys()
    for row in rows:
        groups[tuple(row.get(k) for k in keys)].append(row)
    return dict(groups)


# --- per-sample outcomes of a row ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One run's per-sample test outcome: ``key`` names the test set, ``data`` feeds the statistics."""

    key: tuple
    data: Any  # Predictions (classification) or per-image Dice (segmentation)
    size: int


def predictions_path(row: dict) -> Path | None:
    """The row's ``predictions`` field, else ``predictions.csv`` in its run dir, else None."""
    given = row.get("predictions")
    if given:
        return Path(given)
    candidate = Path(row.get("run_dir") or "") / PREDICTIONS_FILE
    return candidate if row.get("run_dir") and candidate.is_file() else None


class Outcomes:
    """Loads (once) the per-sample outcome of each row; None where the row has none."""

    def __init__(self) -> None:
        self._cache: dict[str, Outcome | None] = {}
        self.errors: list[str] = []

    def __call__(self, row: dict, kind: str) -> Outcome | None:
        key = row.get("cell_key") or row.get("run_dir") or str(id(row))
        if key not in self._cache:
            self._cache[key] = self._load(row, kind)
        return self._cache[key]

    def _load(self, row: dict, kind: str) -> Outcome | None:
        loader = OUTCOME_LOADERS.get(kind)
        if loader is None:
            return None
        try:
            return loader(row)
        except MedsslError as err:
            self.errors.append(str(err))
            return None


def _per_image(row: dict) -> Outcome | None:
    per_image = json.loads(row.get("metrics") or "{}").get("test_per_image")
    if not per_image:
        return None
    names = tuple(sorted(per_image))
    return Outcome(names, np.array([per_image[n].get("dice", math.nan) for n in names], np.float64), len(names))


def _predictions(row: dict) -> Outcome | None:
    path = predictions_path(row)
    if path is None:
        return None
    predictions = load_predictions(path)
    return Outcome(predictions.key, predictions, len(predictions.index))


def _scores(row: dict) -> Outcome | None:
    """An anomaly run's per-image scores of its primary scorer (scores.csv), as two-column 'probabilities':
    the AUC statistic and DeLong only rank them."""
    path = Path(row.get("run_dir") or "") / "scores.csv"
    if not row.get("run_dir") or not path.is_file():
        return None
    scorer = json.loads(row.get("metrics") or "{}").get("primary_scorer")
    lines = [line.split(",") for line in path.read_text().splitlines() if line]
    header, body = lines[0], lines[1:]
    if scorer not in header:
        return None
    names = [r[0] for r in body]
    labels = np.array([int(r[1]) for r in body])
    scores = np.array([float(r[header.index(scorer)]) for r in body])
    predictions = Predictions(np.arange(len(names)), labels, np.stack([-scores, scores], 1))
    return Outcome(tuple(names), predictions, len(names))


# per-sample outcome kinds (``Metric.outcomes``) -> loader
OUTCOME_LOADERS: dict[str, Callable[[dict], Outcome | None]] = {
    "predictions": _predictions, "per_image": _per_image, "scores": _scores}


# --- comparisons ---------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    condition: dict
    metrics: dict[str, Difference]  # the task's metric first, then (classification) the secondary ones
    note: str | None = None  # why the interval ignores test-set noise, when it does

    @property
    def score(self) -> Difference:
        return next(iter(self.metrics.values()))

    @property
    def minority_recall(self) -> Difference | None:
        return self.metrics.get(MINORITY_RECALL)


def _seed_values(row: dict, name: str, metric: Metric) -> float | None:
    if name == metric.name:
        return metric.value(row)
    if name == MINORITY_RECALL:
        return row.get("minority_recall")
    return json.loads(row.get("metrics") or "{}").get("test", {}).get("balanced_acc")


def _statistics(metric: Metric, minority: int | None) -> dict[str, Statistic]:
    """The statistics a comparison reports: the primary metric on the per-sample outcomes, and for class
    predictions the secondary families (balanced accuracy, minority recall)."""
    if metric.outcomes == "scores":
        return {metric.name: auc_statistic}
    if metric.outcomes != "predictions":
        return {metric.name: weighted_mean}
    out: dict[str, Statistic] = {metric.name: auc_statistic, BALANCED_ACCURACY: balanced_accuracy_statistic}
    if minority is not None:
        out[MINORITY_RECALL] = recall_statistic(int(minority))
    return out


def _same_test_set(a: Outcome, b: Outcome) -> bool:
    if a.key != b.key:
        return False
    if isinstance(a.data, Predictions):
        return bool(np.array_equal(a.data.labels, b.data.labels))
    return True


def _delong(pairs: list[tuple[Outcome, Outcome]]) -> list[float]:
    out = []
    for a, b in pairs:
        p: Predictions = a.data
        if p.probs.shape[1] == 2:
            out.append(delong(p.probs[:, 1], b.data.probs[:, 1], p.labels == 1)[2])
    return out


def compare_to_scratch(rows: list[dict], metric: Metric = AUC, *, resamples: int = RESAMPLES, seed: int = 0,
                       outcomes: Callable[[dict, str], Outcome | None] | None = None) -> list[Comparison]:
    """Every non-scratch condition against scratch with the same pairing factors, matched seed by seed."""
    def pairing(row: dict) -> tuple:
        return tuple(row.get(k) for k in paired), row["seed"]

    paired, keys = pairing_keys(), condition_keys()
    load = outcomes or Outcomes()
    kind = metric.outcomes
    scratch = {pairing(r): r for r in rows if r["method"] == SCRATCH}
    out = []
    for key, group in conditions(rows).items():
        condition = dict(zip(keys, key, strict=True))
        if condition["method"] == SCRATCH:
            continue
        pairs = [(r, scratch.get(pairing(r))) for r in group]
        pairs = [(r, s) for r, s in pairs if s is not None]
        if not pairs:
            continue
        minority = pairs[0][0].get("minority_class") if kind == "predictions" else None
        statistics = _statistics(metric, minority)
        loaded = [(load(r, kind), load(s, kind)) for r, s in pairs]
        note = None
        if any(a is None or b is None for a, b in loaded):
            note = "no per-sample test outcomes for every run: the interval covers seed noise only"
        elif not all(_same_test_set(a, b) for a, b in loaded):
            note = "the arms were tested on different samples: the interval covers seed noise only"
        differences: dict[str, Difference] = {}
        for name, statistic in statistics.items():
            if note is None:
                differences[name] = paired_difference(
                    [a.data for a, _ in loaded], [b.data for _, b in loaded], statistic, [a.key for a, _ in loaded],
                    [a.size for a, _ in loaded], resamples=resamples, seed=seed)
            else:
                differences[name] = seed_only_difference([_seed_values(r, name, metric) for r, _ in pairs],
                                                         [_seed_values(s, name, metric) for _, s in pairs])
        if note is None and isinstance(loaded[0][0].data, Predictions):
            differences[metric.name].delong_p = _delong(loaded)
        out.append(Comparison(condition, differences, note))
    return out


def judge(comparisons: list[Comparison], correction: str = "holm", alpha: float = ALPHA,
          lower_is_better: tuple[str, ...] = ()) -> int:
    """Verdicts for every difference, corrected over all comparisons of each metric (the task's metric is one
    family, each secondary metric another); returns the size of the largest family. For a metric named in
    ``lower_is_better`` a significant decrease is 'better'."""
    families: dict[str, list[Difference]] = defaultdict(list)
    for c in comparisons:
        for name, d in c.metrics.items():
            families[name].append(d)
    sizes = [decide(family, correction, alpha) for family in families.values()]
    for name in lower_is_better:
        for d in families.get(name, []):
            d.verdict = {"better": "worse", "worse": "better"}.get(d.verdict, d.verdict)
    return max(sizes, default=0)
