import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.evaluate.linear import C_GRID, fit_linear_probe
from medssl.finetune.metrics import classification_metrics


def _blobs(rng, n, shift):
    labels = np.arange(n) % 2
    x = rng.normal(0, 1, (n, 8))
    x[:, 0] += shift * (2 * labels - 1)
    return x, labels


def test_probe_separates_separable_features_and_picks_c_on_val():
    rng = np.random.default_rng(0)
    train, val, test = _blobs(rng, 80, 4), _blobs(rng, 40, 4), _blobs(rng, 40, 4)
    probe = fit_linear_probe(*train, *val, 2)
    assert set(probe.val_scores) == set(C_GRID) and probe.c in C_GRID
    assert probe.val_scores[probe.c] == max(probe.val_scores.values())
    probs = probe.predict_proba(test[0])
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert classification_metrics(probs, test[1])["auc"] == 1.0


def test_probe_on_noise_is_near_chance():
    rng = np.random.default_rng(1)
    train, val, test = _blobs(rng, 200, 0), _blobs(rng, 100, 0), _blobs(rng, 400, 0)
    probe = fit_linear_probe(*train, *val, 2)
    assert abs(classification_metrics(probe.predict_proba(test[0]), test[1])["auc"] - 0.5) < 0.1


def test_probe_needs_two_classes():
    x = np.zeros((4, 2))
    with pytest.raises(MedsslError, match="two classes"):
        fit_linear_probe(x, np.zeros(4, int), x, np.zeros(4, int), 2)
