"""Simulated studies that check the verdict rule: false calls under no effect, coverage, power.

A simulated classifier scores test image i in seed s as ``y_i * mu + z_i + a_i + e_si``: ``mu`` (the class
separation) varies between seeds (training noise), ``z_i`` is how hard the image is for every model, ``a_i`` how
this arm in particular sees it (fixed across seeds: an arm's real strengths and blind spots on this test set),
``e_si`` per-run noise. Both arms share ``y`` and ``z``; under the null they draw ``mu`` and ``a`` from the same
distribution, so the population AUCs are equal while a finite test set still favours one arm by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from medssl.study.inference import ALPHA, decide, image_replicates, two_level, weighted_auc


@dataclass(frozen=True)
class Design:
    seeds: int
    test_images: int = 150
    positive_fraction: float = 0.3
    separation: float = 1.5  # mean class separation in score units: population AUC ~0.82
    seed_sd: float = 0.17  # between-seed sd of the separation: ~0.03 AUC between seeds
    arm_image_sd: float = 0.6  # arm x image effect (fixed over seeds)
    run_noise_sd: float = 0.4  # seed x image noise
    effect: float = 0.0  # separation added to the method arm

    @property
    def score_variance(self) -> float:
        return 1.0 + self.arm_image_sd**2 + self.run_noise_sd**2

    def population_auc(self, separation: float) -> float:
        """E over seeds of the population AUC: P(pos score > neg score) = Phi(mu / sqrt(2 var)), mu ~ N."""
        return float(sps.norm.cdf(separation / math.sqrt(2 * self.score_variance + self.seed_sd**2)))

    @property
    def true_difference(self) -> float:
        return self.population_auc(self.separation + self.effect) - self.population_auc(self.separation)


def simulate(design: Design, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels (N,), method scores (S, N), reference scores (S, N)) of one simulated study."""
    n, s = design.test_images, design.seeds
    positives = max(2, round(design.positive_fraction * n))
    labels = np.zeros(n, dtype=bool)
    labels[:positives] = True
    hardness = rng.normal(0, 1, n)

    def arm(separation: float) -> np.ndarray:
        mu = rng.normal(separation, design.seed_sd, (s, 1))
        own = rng.normal(0, design.arm_image_sd, n)
        return labels * mu + hardness + own + rng.normal(0, design.run_noise_sd, (s, n))

    return labels, arm(design.separation + design.effect), arm(design.separation)


def todays_rule(diffs: np.ndarray, resamples: int = 2000, rng: np.random.Generator | None = None) -> str:
    """The rule this module replaced: the 95 % percentile bootstrap of per-seed differences excludes 0, with
    >= 3 pairs. Kept to show, in tests and the benchmark, why it was replaced."""
    if len(diffs) < 3:
        return "inconclusive"
    rng = rng or np.random.default_rng(0)
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return "better" if low > 0 else "worse" if high < 0 else "inconclusive"


def percentile_hierarchical_rule(observed: np.ndarray, replicates: np.ndarray, rng: np.random.Generator) -> str:
    """A naive hierarchical percentile bootstrap (resample seeds, then use each seed's image replicate): the
    obvious construction, shown in the benchmark to under-cover with few seeds."""
    s, b = replicates.shape
    picks = rng.integers(0, s, (b, s))
    means = replicates[picks, np.arange(b)[:, None]].mean(axis=1)
    means = means[np.isfinite(means)]
    low, high = np.percentile(means, [2.5, 97.5])
    return "better" if low > 0 else "worse" if high < 0 else "inconclusive"


@dataclass
class Calibration:
    seeds: int
    simulations: int
    call_rate: float  # share of simulations with a verdict other than 'inconclusive'
    coverage: float  # share of intervals holding the true difference
    todays_rule_call_rate: float
    percentile_hierarchical_call_rate: float


def calibrate(design: Design, simulations: int, resamples: int = 200, seed: int = 0,
              alpha: float = ALPHA) -> Calibration:
    """Simulate ``simulations`` studies of one comparison each and score every rule on them."""
    rng = np.random.default_rng(seed)
    truth = design.true_difference
    called = covered = old_called = naive_called = 0
    sizes, test_sets = [design.test_images] * design.seeds, [0] * design.seeds
    for k in range(simulations):
        labels, method, reference = simulate(design, rng)

        def statistic(scores: np.ndarray, weights: np.ndarray, labels: np.ndarray = labels) -> np.ndarray:
            return weighted_auc(scores, labels, weights)

        observed, replicates = image_replicates(list(method), list(reference), statistic, test_sets, sizes,
                                                resamples, seed=seed * 100_003 + k)
        d = two_level(observed, replicates, design.test_images, alpha)
        decide([d], alpha=alpha)
        called += d.verdict != "inconclusive"
        covered += bool(d.low <= truth <= d.high)
        old_called += todays_rule(observed, rng=rng) != "inconclusive"
        naive_called += percentile_hierarchical_rule(observed, replicates, rng) != "inconclusive"
    return Calibration(design.seeds, simulations, called / simulations, covered / simulations,
                       old_called / simulations, naive_called / simulations)


def monte_carlo_error(rate: float, simulations: int) -> float:
    """Binomial standard error of a simulated rate."""
    return math.sqrt(max(rate * (1 - rate), 1e-12) / simulations)
