import numpy as np
import pytest

from medssl.evaluate.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    reliability,
)


def _binary_logits(p1: np.ndarray) -> np.ndarray:
    return np.log(np.stack([1 - p1, p1], axis=1))


def test_ece_of_a_perfectly_calibrated_predictor_is_zero():
    # confidence 0.75 on 4 samples with 3 right; 0.9 on 10 samples with 9 right; 0.6 (class 0) on 5 with 3 right
    p1 = np.array([0.75] * 4 + [0.9] * 10 + [0.4] * 5)
    labels = np.array([1, 1, 1, 0] + [1] * 9 + [0] + [0, 0, 0, 1, 1])
    assert expected_calibration_error(_binary_logits(p1), labels, bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_known_miscalibrated_predictor_equals_the_hand_value():
    # 5 samples at confidence 0.9, all right (gap 0.1); 5 at 0.6, one right (accuracy 0.2, gap 0.4)
    p1 = np.array([0.9] * 5 + [0.6] * 5)
    labels = np.array([1] * 5 + [1, 0, 0, 0, 0])
    assert expected_calibration_error(_binary_logits(p1), labels, bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)


def test_reliability_bins_are_right_closed_and_count_every_sample():
    p1 = np.array([0.6, 0.61, 0.8, 0.95, 0.45])  # bins of width 0.2: (0.4, 0.6], (0.6, 0.8], (0.8, 1]
    diagram = reliability(_binary_logits(p1), np.array([1, 1, 0, 1, 0]), bins=5)
    assert diagram["counts"] == [0, 0, 2, 2, 1]
    assert diagram["accuracy"][2] == pytest.approx(1.0) and diagram["accuracy"][3] == pytest.approx(0.5)
    assert diagram["confidence"][0] is None


def _overconfident(rng, n):
    true_logits = rng.normal(0, 1.5, (n, 3))
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return 3.0 * true_logits, labels  # sharpened three-fold: over-confident


def test_temperature_scaling_undoes_over_confidence():
    rng = np.random.default_rng(0)
    val, test = _overconfident(rng, 2000), _overconfident(rng, 2000)
    t = fit_temperature(*val)
    assert t == pytest.approx(3.0, rel=0.15)
    assert negative_log_likelihood(*test, temperature=t) < negative_log_likelihood(*test)
    report = calibration_report(*val, *test, bins=15)
    assert report["after"]["nll"] < report["before"]["nll"]
    assert report["after"]["ece"] < report["before"]["ece"] / 2


def test_a_calibrated_model_keeps_temperature_near_one(tmp_path):
    rng = np.random.default_rng(1)
    logits, labels = _overconfident(rng, 3000)
    assert fit_temperature(logits / 3.0, labels) == pytest.approx(1.0, abs=0.1)
    report = calibration_report(logits, labels, logits, labels)
    plot_reliability(report, tmp_path / "r.png", title="test")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
