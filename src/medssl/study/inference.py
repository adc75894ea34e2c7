"""Inference for paired study comparisons: both sources of variance, calibrated verdicts, power.

A study's difference "method minus scratch" varies with the training seed (fine-tuning noise, the nested labelled
subset, the encoder when pre-training is per seed) and with the finite test set. The interval here adds both:

* test images: a paired bootstrap of the test set. Every replicate draws one set of image indices (bootstrap
  counts) and uses it for both arms and for every seed that saw the same test set, so the image noise shared by
  the seeds is kept, not averaged away. Its variance is ``var_images``.
* seeds: the spread of the per-seed differences, ``var_seeds = s^2 / S`` (unbiased).

The interval is Student-t on ``sqrt(var_seeds + var_images)`` with Satterthwaite degrees of freedom. A percentile
bootstrap over seeds is not used: with 3 seeds it covers ~0.76, not 0.95 (``benchmarks/verdict_calibration.py``
shows it), while the t interval is exact for normal seed noise and tends to the bootstrap when the test set
dominates. A verdict needs the interval to exclude 0 *and* the p value to survive Holm (or Benjamini-Hochberg)
over every comparison of the report; ``study.calibration`` simulates null studies to prove the rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from medssl.errors import MedsslError
from medssl.finetune.predictions import read_predictions

RESAMPLES = 1000
ALPHA = 0.05
POWER = 0.8
CORRECTIONS = ("holm", "bh")
MAX_EXACT_PERMUTATION_SEEDS = 16  # 2^16 sign patterns; beyond that a seeded Monte Carlo sample


# --- per-sample predictions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Predictions:
    """One run's per-sample class probabilities on one split (row i = ``index[i]`` of that split)."""

    index: np.ndarray  # (N,) int
    labels: np.ndarray  # (N,) int
    probs: np.ndarray  # (N, K) float

    @property
    def key(self) -> tuple:
        """The identity of the evaluated sample set: runs with equal keys saw the same images."""
        return tuple(self.index.tolist())

    def sorted(self) -> Predictions:
        order = np.argsort(self.index, kind="stable")
        return Predictions(self.index[order], self.labels[order], self.probs[order])


def load_predictions(path: str | Path, split: str = "test") -> Predictions:
    """One split of a run's ``predictions.csv`` (``finetune.predictions`` format), sorted by sample index."""
    splits = read_predictions(path)
    if split not in splits:
        raise MedsslError(f"{path}: no '{split}' predictions")
    chosen = splits[split]
    if len(np.unique(chosen.indices)) != len(chosen.indices):
        raise MedsslError(f"{path}: a sample index repeats in the '{split}' predictions")
    return Predictions(chosen.indices, chosen.labels, chosen.probs).sorted()


# --- metrics under bootstrap weights -------------------------------------------------------------------------
# ``weights`` is (B, N): row b holds how often each sample was drawn in replicate b (all ones: the test set).
def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) of ``scores`` for the boolean ``positive`` under each weight row;
    NaN where a replicate holds no positive or no negative sample. O(B N) after one sort."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, pos = scores[order], positive[order].astype(bool)
    w = weights[:, order].astype(np.float64)
    neg, pos_w = w * ~pos, w * pos
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # runs of tied scores
    if len(starts) < len(scores):
        neg, pos_w = np.add.reduceat(neg, starts, axis=1), np.add.reduceat(pos_w, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - 0.5 * neg  # a tied negative counts 1/2
    wins = np.einsum("bn,bn->b", pos_w, neg_below)
    pairs = pos_w.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def weighted_macro_auc(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary: AUC of class 1. Multi-class: the mean one-vs-rest AUC (as ``finetune.metrics.auc``)."""
    if probs.shape[1] == 2:
        return weighted_auc(probs[:, 1], labels == 1, weights)
    return np.mean([weighted_auc(probs[:, c], labels == c, weights) for c in range(probs.shape[1])], axis=0)


def weighted_recall(predicted: np.ndarray, labels: np.ndarray, cls: int, weights: np.ndarray) -> np.ndarray:
    members = labels == cls
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ (members & (predicted == cls))) / (weights @ members)


def weighted_balanced_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int,
                               weights: np.ndarray) -> np.ndarray:
    recalls = np.stack([weighted_recall(predicted, labels, c, weights) for c in range(num_classes)])
    present = np.isfinite(recalls)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, recalls, 0).sum(0) / present.sum(0)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights[:, finite] @ values[finite]) / weights[:, finite].sum(axis=1)


Statistic = Callable[[Any, np.ndarray], np.ndarray]  # (one arm's per-sample outcome, weights (B, N)) -> (B,)


def auc_statistic(p: Predictions, weights: np.ndarray) -> np.ndarray:
    return weighted_macro_auc(p.probs, p.labels, weights)


def balanced_accuracy_statistic(p: Predictions, weights: np.ndarray) -> np.ndarray:
    return weighted_balanced_accuracy(p.probs.argmax(1), p.labels, p.probs.shape[1], weights)


def recall_statistic(cls: int) -> Statistic:
    def statistic(p: Predictions, weights: np.ndarray) -> np.ndarray:
        return weighted_recall(p.probs.argmax(1), p.labels, cls, weights)

    return statistic


# --- the two-level interval ----------------------------------------------------------------------------------
@dataclass
class Difference:
    """A paired difference (method - reference) over seeds, or one arm's score when ``reference`` was None."""

    seeds: int
    estimate: float  # mean over seeds of the per-seed value on the full test set
    per_seed: list[float]
    var_seeds: float  # s^2 / S (NaN with one seed)
    var_images: float  # test-set bootstrap variance of the seed mean (0 when no per-sample data)
    test_images: int | None  # None: no per-sample data, the interval ignores test-set noise
    df: float
    low: float
    high: float
    p: float  # two-sided, from the same t construction as the interval (NaN: too few seeds)
    permutation_p: float  # exact sign-flip over seeds (NaN for one seed)
    delong_p: list[float] = field(default_factory=list)  # per seed, binary AUC comparisons only
    adjusted_p: float = math.nan  # after the report's correction (set by ``decide``)
    verdict: str = "inconclusive"  # "better" | "worse" | "inconclusive" (set by ``decide``)

    @property
    def se(self) -> float:
        return math.sqrt(self.var_seeds + self.var_images) if self.seeds > 1 else math.nan

    @property
    def sources(self) -> str:
        return "seeds × test images" if self.test_images is not None else "seeds only"


def _bootstrap_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float32)


CHUNK_ELEMENTS = 2_000_000  # bootstrap weights evaluated per call: bounds memory on large test sets


def _in_chunks(statistic: Statistic, outcome: Any, weights: np.ndarray) -> np.ndarray:
    rows = max(1, CHUNK_ELEMENTS // weights.shape[1])
    return np.concatenate([statistic(outcome, weights[i:i + rows]) for i in range(0, len(weights), rows)])


def image_replicates(outcomes: Sequence[Any], references: Sequence[Any] | None, statistic: Statistic,
                     test_sets: Sequence[Hashable], sizes: Sequence[int], resamples: int = RESAMPLES,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(observed (S,), replicates (S, B)) of the per-seed statistic (or paired difference). Seeds that saw the
    same test set (equal ``test_sets`` keys) share each replicate's image draw; both arms always do."""
    rng = np.random.default_rng(seed)
    weights: dict[Hashable, np.ndarray] = {}
    observed, replicates = [], []
    for s, outcome in enumerate(outcomes):
        key = test_sets[s]
        if key not in weights:
            weights[key] = _bootstrap_weights(sizes[s], resamples, rng)
        full = np.ones((1, sizes[s]), dtype=np.float32)
        value, draws = statistic(outcome, full), _in_chunks(statistic, outcome, weights[key])
        if references is not None:
            value = value - statistic(references[s], full)
            draws = draws - _in_chunks(statistic, references[s], weights[key])
        observed.append(float(value[0]))
        replicates.append(draws)
    return np.array(observed), np.stack(replicates)


def two_level(observed: np.ndarray, replicates: np.ndarray | None = None, test_images: int | None = None,
              alpha: float = ALPHA) -> Difference:
    """The t interval from per-seed values and, when given, their test-set bootstrap replicates (S, B)."""
    observed = np.asarray(observed, dtype=np.float64)
    seeds = len(observed)
    estimate = float(observed.mean()) if seeds else math.nan
    var_seeds = float(observed.var(ddof=1)) / seeds if seeds > 1 else math.nan
    var_images = 0.0
    if replicates is not None:
        means = np.asarray(replicates, dtype=np.float64).mean(axis=0)
        means = means[np.isfinite(means)]
        var_images = float(means.var(ddof=1)) if len(means) > 1 else math.nan
    perm = sign_flip_p(observed)
    if seeds < 2 or not math.isfinite(var_images):
        return Difference(seeds, estimate, observed.tolist(), var_seeds, var_images, test_images, math.nan,
                          math.nan, math.nan, math.nan, perm)
    total = var_seeds + var_images
    image_df = (test_images - 1) if test_images else math.inf
    denominator = var_seeds**2 / (seeds - 1) + (var_images**2 / image_df if math.isfinite(image_df) else 0.0)
    df = total**2 / denominator if denominator > 0 else float(seeds - 1)
    se = math.sqrt(total)
    if se == 0:
        low = high = estimate
        p = 1.0 if estimate == 0 else 0.0
    else:
        half = float(sps.t.ppf(1 - alpha / 2, df)) * se
        low, high = estimate - half, estimate + half
        p = float(2 * sps.t.sf(abs(estimate) / se, df))
    return Difference(seeds, estimate, observed.tolist(), var_seeds, var_images, test_images, df, low, high, p, perm)


def paired_difference(method: Sequence[Any], reference: Sequence[Any], statistic: Statistic,
                      test_sets: Sequence[Hashable], sizes: Sequence[int], *, resamples: int = RESAMPLES,
                      seed: int = 0, alpha: float = ALPHA) -> Difference:
    """Method minus reference, seed by seed (``method[s]`` and ``reference[s]`` share seed s and its test set)."""
    observed, replicates = image_replicates(method, reference, statistic, test_sets, sizes, resamples, seed)
    return two_level(observed, replicates, int(np.mean(sizes)), alpha)


def seed_only_difference(method: Sequence[float | None], reference: Sequence[float | None],
                         alpha: float = ALPHA) -> Difference:
    """From per-seed scores alone (no per-sample data): the t interval over seeds, test-set noise left out."""
    a = np.array([np.nan if v is None else v for v in method], dtype=np.float64)
    b = np.array([np.nan if v is None else v for v in reference], dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    return two_level(a[keep] - b[keep], None, None, alpha)


# --- tests beside the interval -------------------------------------------------------------------------------
def sign_flip_p(diffs: np.ndarray, resamples: int = 100_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of the mean over seeds (exact up to 16 seeds). With S seeds it cannot
    fall below 2 / 2^S: 0.25 at 3 seeds, 0.0625 at 5."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if len(diffs) < 2:
        return math.nan
    if len(diffs) <= MAX_EXACT_PERMUTATION_SEEDS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diffs))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, len(diffs)))
    means = np.abs(signs @ diffs) / len(diffs)
    return float(np.mean(means >= abs(diffs.mean()) - 1e-12))


def _midrank(x: np.ndarray) -> np.ndarray:
    return sps.rankdata(x, method="average")


def delong(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """DeLong's test of two correlated AUCs on the same samples (the fast algorithm of Sun & Xu 2014):
    (AUC a, AUC b, two-sided p)."""
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return math.nan, math.nan, math.nan
    aucs, v10, v01 = [], [], []
    for scores in (np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)):
        x, y = scores[positive], scores[~positive]
        rank_x, rank_y, rank_all = _midrank(x), _midrank(y), _midrank(np.r_[x, y])
        aucs.append(float((rank_all[:m].sum() - m * (m + 1) / 2) / (m * n)))
        v10.append((rank_all[:m] - rank_x) / n)  # share of negatives each positive beats (ties 1/2)
        v01.append(1.0 - (rank_all[m:] - rank_y) / m)  # share of positives above each negative
    covariance = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if variance <= 0:
        return aucs[0], aucs[1], 1.0 if aucs[0] == aucs[1] else 0.0
    z = (aucs[0] - aucs[1]) / math.sqrt(variance)
    return aucs[0], aucs[1], float(2 * sps.norm.sf(abs(z)))


# --- multiplicity and verdicts -------------------------------------------------------------------------------
def _ranked(p: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p as floats, an all-NaN output, positions of the finite p values in ascending order)."""
    p = np.asarray(p, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    return p, np.full_like(p, np.nan), finite[np.argsort(p[finite], kind="stable")]


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values (NaN stays NaN and does not count as a comparison)."""
    p, out, order = _ranked(p)
    m = len(order)
    if m:
        out[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return out


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (step-up; NaN stays NaN and does not count)."""
    p, out, order = _ranked(p)
    m = len(order)
    if m:
        scaled = p[order] * m / np.arange(1, m + 1)
        out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


def adjust(p: Sequence[float], correction: str = "holm") -> np.ndarray:
    if correction not in CORRECTIONS:
        raise MedsslError(f"correction must be one of {', '.join(CORRECTIONS)}, got '{correction}'")
    return holm(p) if correction == "holm" else benjamini_hochberg(p)


def decide(differences: Sequence[Difference], correction: str = "holm", alpha: float = ALPHA) -> int:
    """Set ``adjusted_p`` and ``verdict`` of every difference (one family); returns the number of comparisons.
    'better' / 'worse' only when the 1 - alpha interval excludes 0 and the adjusted p is below alpha."""
    adjusted = adjust([d.p for d in differences], correction)
    for d, q in zip(differences, adjusted, strict=True):
        d.adjusted_p = float(q)
        called = math.isfinite(q) and q < alpha
        d.verdict = "better" if called and d.low > 0 else "worse" if called and d.high < 0 else "inconclusive"
    return int(np.isfinite(adjusted).sum())


# --- power ---------------------------------------------------------------------------------------------------
def _satterthwaite(var_seeds: float, seeds: int, var_images: float, test_images: int | None) -> float:
    total = var_seeds + var_images
    denominator = var_seeds**2 / max(seeds - 1, 1) + (var_images**2 / (test_images - 1) if test_images else 0.0)
    return total**2 / denominator if denominator > 0 else float(max(seeds - 1, 1))


def detectable_difference(var_seeds: float, seeds: int, var_images: float, test_images: int | None, alpha: float,
                power: float) -> float:
    df = _satterthwaite(var_seeds, seeds, var_images, test_images)
    return (float(sps.t.ppf(1 - alpha / 2, df)) + float(sps.t.ppf(power, df))) * math.sqrt(var_seeds + var_images)


@dataclass
class Power:
    detectable: float  # smallest |difference| called with ``power`` at ``alpha`` by this design
    alpha: float
    seeds_needed: int | None  # seeds (same test set) for the observed difference; None: more seeds won't do
    test_images_needed: int | None  # test images (same seeds) for it; None: seeds alone limit it


MAX_SEEDS = 1000


def seeds_for(difference: float, seed_variance: float, var_images: float, test_images: int | None,
              alpha: float = ALPHA, power: float = POWER, max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest seeds (>= 2) at which ``difference`` is detected with ``power``, given the per-seed variance of
    the difference and the test set's variance; None when test-set noise alone rules it out."""
    if difference <= 0:
        return None
    for seeds in range(2, max_seeds + 1):
        if detectable_difference(seed_variance / seeds, seeds, var_images, test_images, alpha, power) <= difference:
            return seeds
    return None


def power_analysis(d: Difference, alpha: float = ALPHA, power: float = POWER) -> Power | None:
    """What this design could detect (t approximation with the estimated variance components), and what the
    observed difference would need. ``alpha`` should be the per-comparison level the correction demands."""
    if d.seeds < 2 or not math.isfinite(d.var_seeds) or not math.isfinite(d.var_images):
        return None
    n = d.test_images
    detectable = detectable_difference(d.var_seeds, d.seeds, d.var_images, n, alpha, power)
    target = abs(d.estimate)
    seeds_needed = seeds_for(target, d.var_seeds * d.seeds, d.var_images, n, alpha, power)
    images_needed = None
    if target > 0 and n and d.var_images > 0:
        low, high = n, n * 10_000
        if detectable_difference(d.var_seeds, d.seeds, d.var_images * n / high, high, alpha, power) <= target:
            while low < high:  # the detectable difference falls as the test set grows
                mid = (low + high) // 2
                if detectable_difference(d.var_seeds, d.seeds, d.var_images * n / mid, mid, alpha, power) <= target:
                    high = mid
                else:
                    low = mid + 1
            images_needed = low
    return Power(detectable, alpha, seeds_needed, images_needed)
