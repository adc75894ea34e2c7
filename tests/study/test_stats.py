"""Statistics on hand-made numbers: intervals, paired differences and Wilcoxon p against scipy."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy.stats import wilcoxon

from medssl.study.stats import bootstrap_ci, compare_to_scratch, describe, paired


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.8, 0.05, 5), rng.normal(0.8, 0.05, 200)
    for values in (small, large):
        low, high = bootstrap_ci(values)
        assert low < values.mean() < high
    assert np.subtract(*bootstrap_ci(large)[::-1]) < np.subtract(*bootstrap_ci(small)[::-1])
    low, high = bootstrap_ci(large)
    assert low == pytest.approx(0.8, abs=0.02) and high == pytest.approx(0.8, abs=0.02)


def test_describe_gives_mean_sd_and_skips_missing_values():
    est = describe([0.7, None, 0.8, float("nan"), 0.9])
    assert est.n == 3 and est.mean == pytest.approx(0.8)
    assert est.sd == pytest.approx(statistics.stdev([0.7, 0.8, 0.9]))
    single = describe([0.5])
    assert single.n == 1 and math.isnan(single.sd) and math.isnan(single.low)


def test_paired_difference_sign_interval_and_wilcoxon_match_scipy():
    scratch = [0.70, 0.72, 0.65, 0.80, 0.75, 0.68]
    method = [0.78, 0.75, 0.74, 0.83, 0.79, 0.70]
    result = paired(method, scratch)
    diffs = np.subtract(method, scratch)
    assert result.n == 6 and result.mean_diff == pytest.approx(diffs.mean()) and result.wins == 6
    assert 0 < result.low < result.mean_diff < result.high
    assert result.wilcoxon_p == pytest.approx(wilcoxon(diffs).pvalue)
    assert result.verdict == "better"
    assert paired(scratch, method).verdict == "worse" and paired(scratch, method).mean_diff < 0


def test_mixed_differences_are_inconclusive_and_too_few_pairs_give_no_verdict():
    assert paired([0.8, 0.6, 0.9, 0.5], [0.7, 0.7, 0.7, 0.7]).verdict == "inconclusive"
    two = paired([0.9, 0.95], [0.7, 0.7])  # both better, but two pairs are too few
    assert two.verdict == "inconclusive" and two.wins == 2
    assert math.isnan(paired([0.9], [0.7]).wilcoxon_p)
    assert math.isnan(paired([0.7, 0.8], [0.7, 0.8]).wilcoxon_p)  # all differences zero


def _row(method: str, seed: int, auc: float, fraction: float = 0.1) -> dict:
    return {"dataset": "d", "upstream": "-" if method == "scratch" else "d", "method": method, "backbone": "r",
            "label_fraction": fraction, "imbalance_ratio": None, "policy": "default", "seed": seed,
            "test_auc": auc, "minority_recall": auc / 2}


def test_comparisons_pair_by_seed_not_by_order():
    rows = [_row("scratch", s, 0.6 + 0.05 * s) for s in range(4)]
    rows += [_row("simclr", s, 0.6 + 0.05 * s + 0.1) for s in reversed(range(4))]
    rows += [_row("simclr", 0, 0.9, fraction=1.0)]  # no scratch partner at 100 %: not compared
    (comparison,) = compare_to_scratch(rows)
    assert comparison.condition["method"] == "simclr" and comparison.condition["label_fraction"] == 0.1
    assert comparison.score.mean_diff == pytest.approx(0.1) and comparison.score.wins == 4
    assert comparison.score.low == pytest.approx(0.1) and comparison.minority_recall.mean_diff == pytest.approx(0.05)
