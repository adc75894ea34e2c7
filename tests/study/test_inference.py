"""Inference primitives against independent references: sklearn, scipy, brute force, hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from medssl.errors import MedsslError
from medssl.finetune.metrics import auc as medssl_auc
from medssl.study.inference import (
    Predictions,
    benjamini_hochberg,
    decide,
    delong,
    holm,
    load_predictions,
    paired_difference,
    power_analysis,
    seed_only_difference,
    sign_flip_p,
    two_level,
    weighted_auc,
    weighted_balanced_accuracy,
    weighted_macro_auc,
    weighted_mean,
    weighted_recall,
)


def _draws(n: int, rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=rows).astype(np.float32)


@pytest.mark.parametrize("decimals", [None, 1])  # continuous scores, and heavily tied ones
def test_weighted_auc_equals_sklearn_on_the_resampled_sets(decimals):
    rng = np.random.default_rng(3)
    labels = rng.random(80) < 0.3
    scores = rng.normal(labels * 1.0, 1.0)
    scores = scores if decimals is None else np.round(scores, decimals)
    weights = _draws(80, 5)
    ours = weighted_auc(scores, labels, weights)
    for b in range(5):
        picked = np.repeat(np.arange(80), weights[b].astype(int))
        assert ours[b] == pytest.approx(roc_auc_score(labels[picked], scores[picked]), abs=1e-12)
    assert np.isnan(weighted_auc(scores, np.zeros(80, bool), weights)).all()  # no positives: undefined


def test_multiclass_auc_balanced_accuracy_and_recall_match_the_run_metrics():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 120)
    logits = rng.normal(0, 1, (120, 3)) + np.eye(3)[labels] * 1.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    full = np.ones((1, 120))
    assert weighted_macro_auc(probs, labels, full)[0] == pytest.approx(medssl_auc(probs, labels), abs=1e-12)
    predicted = probs.argmax(1)
    assert weighted_balanced_accuracy(predicted, labels, 3, full)[0] == pytest.approx(
        balanced_accuracy_score(labels, predicted))
    for cls in range(3):
        assert weighted_recall(predicted, labels, cls, full)[0] == pytest.approx(
            recall_score(labels, predicted, labels=[cls], average=None)[0])
    weights = _draws(120, 1, seed=9)
    picked = np.repeat(np.arange(120), weights[0].astype(int))
    assert weighted_balanced_accuracy(predicted, labels, 3, weights)[0] == pytest.approx(
        balanced_accuracy_score(labels[picked], predicted[picked]))


def _brute_force_delong(a: np.ndarray, b: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. 1988 straight from the definition: Mann-Whitney kernels over every (pos, neg) pair."""
    aucs, v10, v01 = [], [], []
    for s in (a, b):
        x, y = s[positive], s[~positive]
        kernel = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(kernel.mean())
        v10.append(kernel.mean(axis=1))
        v01.append(kernel.mean(axis=0))
    m, n = positive.sum(), (~positive).sum()
    cov = np.cov(v10) / m + np.cov(v01) / n
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return aucs[0], aucs[1], 2 * sps.norm.sf(abs(z))


def test_fast_delong_equals_the_brute_force_mann_whitney_covariance():
    rng = np.random.default_rng(5)
    positive = rng.random(150) < 0.3
    shared = rng.normal(0, 1, 150)
    a = np.round(positive * 1.2 + shared + rng.normal(0, 0.6, 150), 1)  # ties included
    b = positive * 0.8 + shared + rng.normal(0, 0.6, 150)
    fast = delong(a, b, positive)
    assert fast == pytest.approx(_brute_force_delong(a, b, positive), abs=1e-10)
    assert fast[0] == pytest.approx(roc_auc_score(positive, a))
    assert 0 < fast[2] < 0.5
    assert delong(a, a, positive)[2] == 1.0  # the same scores: no difference at all


def test_sign_flip_p_is_exact():
    assert sign_flip_p(np.array([0.01, 0.02, 0.03])) == pytest.approx(2 / 8)  # the floor with 3 seeds
    assert sign_flip_p(np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])) == pytest.approx(2 / 64)
    # |mean| of the 16 sign patterns of (1, 1, 1, -1): 0.5 for the observed and its mirror, 1.0 twice, ...
    p = sign_flip_p(np.array([1.0, 1.0, 1.0, -1.0]))
    assert p == pytest.approx(np.mean([abs(np.dot(s, [1, 1, 1, -1])) / 4 >= 0.5 for s in
                                       np.array(np.meshgrid(*[[1, -1]] * 4)).T.reshape(-1, 4)]))
    assert math.isnan(sign_flip_p(np.array([0.1])))


def test_holm_and_benjamini_hochberg_adjust_as_published():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; then the running maximum
    assert holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm(p)[4])
    finite = np.array(p[:4])
    assert benjamini_hochberg(p)[:4] == pytest.approx(sps.false_discovery_control(finite, method="bh"))
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0] and benjamini_hochberg([0.9, 0.8]) == pytest.approx([0.9, 0.9])


def test_without_per_sample_data_the_interval_is_the_t_interval_over_seeds():
    method, reference = [0.80, 0.84, 0.79, 0.86, 0.83], [0.78, 0.80, 0.80, 0.81, 0.79]
    d = seed_only_difference(method, reference)
    diffs = np.subtract(method, reference)
    test = sps.ttest_1samp(diffs, 0.0)
    low, high = test.confidence_interval(0.95)
    assert (d.low, d.high, d.p) == pytest.approx((low, high, test.pvalue))
    assert d.sources == "seeds only" and d.df == pytest.approx(4)
    assert seed_only_difference([0.9, None, 0.8], [0.7, 0.7, None]).seeds == 1  # unpaired seeds drop


def test_image_bootstrap_variance_matches_the_analytic_variance_of_a_mean():
    rng = np.random.default_rng(6)
    dice_a, dice_b = rng.beta(8, 2, 200), rng.beta(7, 2, 200)
    d = paired_difference([dice_a, dice_a + 0.01], [dice_b, dice_b], weighted_mean, ["test", "test"], [200, 200],
                          resamples=4000)
    per_image = dice_a + 0.005 - dice_b  # the seed-mean difference per image
    assert d.var_images == pytest.approx(per_image.var() / 200, rel=0.1)
    assert d.estimate == pytest.approx(per_image.mean())
    assert d.var_seeds == pytest.approx(np.var([0.0, 0.01], ddof=1) / 2)
    same = paired_difference([dice_a, dice_a], [dice_a, dice_a], weighted_mean, [0, 0], [200, 200])
    assert same.estimate == 0 and same.var_images == 0 and same.p == 1.0


def test_seeds_on_the_same_test_set_share_its_noise_but_seeds_on_different_sets_average_it_away():
    rng = np.random.default_rng(7)
    diff = rng.normal(0.02, 0.2, 300)  # per-image difference, identical in 4 seeds
    zeros = np.zeros(300)
    shared = paired_difference([diff] * 4, [zeros] * 4, weighted_mean, [0] * 4, [300] * 4, resamples=2000)
    separate = paired_difference([diff] * 4, [zeros] * 4, weighted_mean, [0, 1, 2, 3], [300] * 4, resamples=2000)
    assert shared.var_images == pytest.approx(4 * separate.var_images, rel=0.2)


def test_verdicts_need_the_interval_to_exclude_zero_and_the_corrected_p():
    strong = two_level(np.array([0.05, 0.06, 0.055, 0.058, 0.052]))
    weak = two_level(np.array([0.01, 0.03, 0.02, 0.015, 0.025]))  # p ~ 0.003 alone
    noise = [two_level(np.array([0.01, -0.01, 0.02, -0.015, 0.0])) for _ in range(30)]
    assert decide([strong, weak]) == 2 and strong.verdict == weak.verdict == "better"
    assert decide([strong, weak, *noise]) == 32
    assert strong.verdict == "better" and weak.verdict == "inconclusive"  # 32 comparisons: Holm needs more
    assert weak.adjusted_p == pytest.approx(min(1.0, weak.p * 31))
    assert decide([weak, *noise], correction="bh") == 31 and weak.verdict == "inconclusive"
    worse = two_level(-np.array([0.05, 0.06, 0.055]))
    decide([worse])
    assert worse.verdict == "worse" and worse.high < 0
    one = two_level(np.array([0.3]))
    assert decide([one]) == 0 and one.verdict == "inconclusive"  # one seed: no seed variance, no verdict
    with pytest.raises(MedsslError, match="correction"):
        decide([strong], correction="bonferroni")


def test_power_inverts_the_interval():
    spread = np.array([0.03, -0.02, 0.05, 0.0, 0.01, 0.04, -0.01, 0.02, 0.03, 0.0])
    d = two_level(spread - spread.mean() + 0.004)
    power = power_analysis(d)
    sd = spread.std(ddof=1)
    expected = (sps.t.ppf(0.975, 9) + sps.t.ppf(0.8, 9)) * sd / math.sqrt(10)
    assert power.detectable == pytest.approx(expected)
    # an observed difference as large as today's detectable one needs exactly today's 10 seeds
    at_limit = two_level(spread - spread.mean() + expected * 1.0001)
    assert power_analysis(at_limit).seeds_needed == 10
    assert power.seeds_needed > 10 and power.test_images_needed is None  # no per-sample data
    per_image = np.random.default_rng(8).normal(0.0, 0.3, 100)
    per_image += 0.005 - per_image.mean()  # +0.005 observed, test-set se ~0.03
    with_images = paired_difference([per_image] * 3, [np.zeros(100)] * 3, weighted_mean, [0] * 3, [100] * 3)
    p = power_analysis(with_images)
    assert p.seeds_needed is None  # no seed noise here: only more test images help
    assert p.detectable > 0.05 and p.test_images_needed > 100 * (p.detectable / 0.005) ** 2 * 0.8


def test_load_predictions_reads_one_split_sorted_by_index(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("split,index,label,prob_0,prob_1\nval,0,1,0.2,0.8\ntest,2,0,0.9,0.1\ntest,0,1,0.3,0.7\n")
    p = load_predictions(path)
    assert isinstance(p, Predictions) and p.index.tolist() == [0, 2] and p.labels.tolist() == [1, 0]
    assert p.probs.tolist() == [[0.3, 0.7], [0.9, 0.1]]
    assert load_predictions(path, split="val").key == (0,)
    with pytest.raises(MedsslError, match="no 'train'"):
        load_predictions(path, split="train")
    with pytest.raises(MedsslError, match="not found"):
        load_predictions(tmp_path / "absent.csv")
    (tmp_path / "bad.csv").write_text("split,index,label\ntest,0,1\n")
    with pytest.raises(MedsslError, match="prob_"):
        load_predictions(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("split,index,label,prob_0\ntest,x,1,0.5\n")
    with pytest.raises(MedsslError, match="not a number"):
        load_predictions(tmp_path / "nan.csv")
