"""Statistics over seeds: mean ± sd, 95 % bootstrap CIs, and paired comparisons against ``scratch``.

Pairs share the seed and hence the same nested labelled subset (and imbalance subsample), so the paired
difference removes the subset's luck from the comparison.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from medssl.study.spec import SCRATCH

RESAMPLES = 10_000
MIN_PAIRS = 3  # a percentile bootstrap of 2 values is just their range: too few for any verdict
CONDITION = ("dataset", "upstream", "method", "backbone", "label_fraction", "label_count", "imbalance_ratio",
             "policy")
PAIRING = ("dataset", "backbone", "label_fraction", "label_count", "imbalance_ratio", "policy")  # scratch's arm


@dataclass(frozen=True)
class Metric:
    """The score a study's task is judged by: its results column and its name in sentences."""

    column: str
    name: str


AUC, DICE = Metric("test_auc", "AUC"), Metric("test_dice", "Dice")
METRICS = {"classify": AUC, "segment": DICE}


def task_metric(task: str | None) -> Metric:
    return METRICS[task or "classify"]


@dataclass
class Estimate:
    n: int
    mean: float
    sd: float
    low: float  # 95 % bootstrap percentile interval of the mean (NaN for fewer than 2 values)
    high: float


@dataclass
class Paired:
    n: int
    mean_diff: float  # method - scratch
    low: float
    high: float
    wilcoxon_p: float  # two-sided signed-rank p; NaN when n < 2 or every difference is 0
    wins: int

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the CI excludes 0 (and there are >= MIN_PAIRS pairs), else 'inconclusive'."""
        if self.n < MIN_PAIRS or math.isnan(self.low):
            return "inconclusive"
        return "better" if self.low > 0 else "worse" if self.high < 0 else "inconclusive"


def _finite(values: list[float | None]) -> np.ndarray:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile interval of the mean over resamples with replacement (seeded: reports are reproducible)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def describe(values: list[float | None]) -> Estimate:
    v = _finite(values)
    if len(v) == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    low, high = bootstrap_ci(v)
    return Estimate(len(v), float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, low, high)


def wilcoxon_p(diffs: np.ndarray) -> float:
    if len(diffs) < 2 or not np.any(diffs != 0):
        return math.nan
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(diffs).pvalue)


def paired(method: list[float | None], reference: list[float | None]) -> Paired:
    """Paired comparison of equal-length lists (pair i = the same seed); pairs with a missing value drop."""
    a = np.array([np.nan if v is None else v for v in method], dtype=np.float64)
    b = np.array([np.nan if v is None else v for v in reference], dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    diffs = a[keep] - b[keep]
    if len(diffs) == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, 0)
    low, high = bootstrap_ci(diffs)
    return Paired(len(diffs), float(diffs.mean()), low, high, wilcoxon_p(diffs), int((diffs > 0).sum()))


def conditions(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by everything but the seed (insertion order kept)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in CONDITION)].append(row)
    return dict(groups)


@dataclass
class Comparison:
    condition: dict
    score: Paired  # of the task's metric (AUC or Dice)
    minority_recall: Paired | None  # classification only


def compare_to_scratch(rows: list[dict], metric: Metric = AUC) -> list[Comparison]:
    """Every non-scratch condition against scratch with the same pairing factors, matched seed by seed."""
    def pairing(row: dict) -> tuple:
        return tuple(row.get(k) for k in PAIRING), row["seed"]

    scratch = {pairing(r): r for r in rows if r["method"] == SCRATCH}
    out = []
    for key, group in conditions(rows).items():
        condition = dict(zip(CONDITION, key, strict=True))
        if condition["method"] == SCRATCH:
            continue
        pairs = [(r, scratch.get(pairing(r))) for r in group]
        pairs = [(r, s) for r, s in pairs if s is not None]
        if not pairs:
            continue
        recall = None if metric != AUC else paired([r["minority_recall"] for r, _ in pairs],
                                                                 [s["minority_recall"] for _, s in pairs])
        out.append(Comparison(condition, paired([r[metric.column] for r, _ in pairs],
                                                [s[metric.column] for _, s in pairs]), recall))
    return out
