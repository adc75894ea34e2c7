"""Study rows -> paired comparisons: seed pairing, per-sample intervals, the seed-only fallback, verdicts."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats as sps

from medssl.study.inference import weighted_auc
from medssl.study.stats import BALANCED_ACCURACY, DICE, MINORITY_RECALL, compare_to_scratch, describe, judge


def test_describe_gives_mean_sd_and_the_t_interval_and_skips_missing_values():
    est = describe([0.7, None, 0.8, float("nan"), 0.9])
    assert est.n == 3 and est.mean == pytest.approx(0.8)
    assert est.sd == pytest.approx(statistics.stdev([0.7, 0.8, 0.9]))
    half = sps.t.ppf(0.975, 2) * est.sd / math.sqrt(3)
    assert (est.low, est.high) == pytest.approx((0.8 - half, 0.8 + half))
    single = describe([0.5])
    assert single.n == 1 and math.isnan(single.sd) and math.isnan(single.low)


def _row(method: str, seed: int, auc: float, fraction: float = 0.1, **extra: object) -> dict:
    return {"cell_key": f"{method}-{fraction}-{seed}", "dataset": "d", "upstream": "-" if method == "scratch" else "d",
            "method": method, "backbone": "r", "label_fraction": fraction, "label_count": None,
            "imbalance_ratio": None, "policy": "default", "seed": seed, "test_auc": auc, "minority_recall": auc / 2,
            "minority_class": 1, "metrics": json.dumps({"test": {"balanced_acc": auc - 0.1}}), "run_dir": "", **extra}


def test_without_predictions_comparisons_pair_by_seed_and_say_the_interval_is_seed_only():
    rows = [_row("scratch", s, 0.6 + 0.05 * s) for s in range(4)]
    rows += [_row("simclr", s, 0.6 + 0.05 * s + 0.1 + 0.01 * (s % 2)) for s in reversed(range(4))]
    rows += [_row("simclr", 0, 0.9, fraction=1.0)]  # no scratch partner at 100 %: not compared
    (comparison,) = compare_to_scratch(rows)
    assert comparison.condition["method"] == "simclr" and comparison.condition["label_fraction"] == 0.1
    assert comparison.score.estimate == pytest.approx(0.105) and comparison.score.seeds == 4
    assert comparison.score.sources == "seeds only" and "seed noise only" in comparison.note
    assert comparison.minority_recall.estimate == pytest.approx(0.0525)
    assert comparison.metrics[BALANCED_ACCURACY].estimate == pytest.approx(0.105)
    assert judge([comparison]) == 1 and comparison.score.verdict == "better"  # one comparison per metric family


def _write_predictions(path, labels: np.ndarray, positive_prob: np.ndarray) -> str:
    lines = ["split,index,label,prob_0,prob_1"]
    lines += [f"val,{i},{y},0.5,0.5" for i, y in enumerate(labels[:5])]  # another split, ignored
    lines += [f"test,{i},{y},{1 - p:.6f},{p:.6f}" for i, (y, p) in enumerate(zip(labels, positive_prob, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_with_predictions_the_interval_carries_test_set_noise_and_delong(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(120) < 0.3).astype(int)
    rows = []
    for seed in range(3):
        for method, separation in (("scratch", 1.0), ("spark", 1.6)):
            prob = 1 / (1 + np.exp(-(labels * separation + rng.normal(0, 1, 120) - 1)))
            path = _write_predictions(tmp_path / f"{method}{seed}.csv", labels, prob)
            auc = float(weighted_auc(prob, labels == 1, np.ones((1, 120)))[0])
            rows.append(_row(method, seed, auc, predictions=path))
    (comparison,) = compare_to_scratch(rows, resamples=300)
    score = comparison.score
    assert comparison.note is None and score.sources == "seeds × test images" and score.test_images == 120
    assert score.estimate == pytest.approx(np.mean([r["test_auc"] for r in rows if r["method"] == "spark"])
                                           - np.mean([r["test_auc"] for r in rows if r["method"] == "scratch"]))
    assert score.var_images > 0 and len(score.delong_p) == 3 and all(0 <= p <= 1 for p in score.delong_p)
    seed_only = compare_to_scratch([{**r, "predictions": None} for r in rows])[0].score
    assert score.high - score.low > seed_only.high - seed_only.low - 1e-9 or score.df > seed_only.df
    assert set(comparison.metrics) == {"AUC", BALANCED_ACCURACY, MINORITY_RECALL}


def test_a_run_tested_on_other_samples_falls_back_to_seeds_only(tmp_path):
    labels = np.array([0, 1] * 20)
    rows = []
    for seed in range(2):
        for method in ("scratch", "byol"):
            kept = labels if method == "scratch" else labels[::-1]  # same indices, different labels: not paired
            rows.append(_row(method, seed, 0.7, predictions=_write_predictions(tmp_path / f"{method}{seed}.csv",
                                                                             kept, np.linspace(0, 1, 40))))
    (comparison,) = compare_to_scratch(rows)
    assert "different samples" in comparison.note and comparison.score.sources == "seeds only"


def test_segmentation_uses_per_image_dice():
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(3):
        for method, shift in (("scratch", 0.0), ("genesis", 0.05)):
            dice = np.clip(rng.normal(0.7 + shift, 0.1, 30), 0, 1)
            per_image = {f"img{i:02d}": {"dice": float(v)} for i, v in enumerate(dice)}
            rows.append({**_row(method, seed, 0.0), "test_auc": None, "test_dice": float(dice.mean()),
                         "metrics": json.dumps({"test_per_image": per_image})})
    (comparison,) = compare_to_scratch(rows, DICE)
    assert list(comparison.metrics) == ["Dice"] and comparison.score.test_images == 30
    expected = np.mean([r["test_dice"] for r in rows if r["method"] == "genesis"]) - \
        np.mean([r["test_dice"] for r in rows if r["method"] == "scratch"])
    assert comparison.score.estimate == pytest.approx(expected) and comparison.score.var_images > 0


def test_each_metric_is_its_own_correction_family():
    rows = []
    for fraction in (0.1, 0.5, 1.0):
        rows += [_row("scratch", s, 0.6 + 0.01 * s, fraction) for s in range(4)]
        rows += [_row("simclr", s, 0.65 + 0.012 * s, fraction) for s in range(4)]
    comparisons = compare_to_scratch(rows)
    assert judge(comparisons) == 3  # three conditions; AUC, balanced accuracy and recall corrected apart
    auc = [c.score for c in comparisons]
    raw = sorted(d.p for d in auc)
    assert min(d.adjusted_p for d in auc) == pytest.approx(min(1.0, 3 * raw[0]))
    assert judge(comparisons, correction="bh") == 3
    assert max(d.adjusted_p for d in auc) == pytest.approx(raw[-1])  # BH leaves the largest p as it is
