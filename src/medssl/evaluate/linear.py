"""Linear probe on precomputed frozen features: L2-regularised logistic regression, C chosen on val only."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from medssl.errors import MedsslError
from medssl.finetune.metrics import auc

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class LinearProbe:
    """A fitted probe: standardisation from the training features, then logistic regression."""

    scaler: StandardScaler
    model: LogisticRegression
    c: float
    num_classes: int
    val_scores: dict[float, float]  # every C tried -> its validation score

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(features), self.num_classes))
        probs[:, self.model.classes_] = self.model.predict_proba(self.scaler.transform(features))
        return probs


def _val_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Validation AUC; where undefined (a class absent from val), negative log-likelihood's negation."""
    value = auc(probs, labels)
    if math.isfinite(value):
        return value
    return float(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     num_classes: int, *, c_grid: tuple[float, ...] = C_GRID, seed: int = 0,
                     class_weight: str | None = None) -> LinearProbe:
    """Fit one logistic regression per C on train, keep the C with the best val AUC (ties: smaller C,
    i.e. stronger regularisation)."""
    if len(np.unique(train_y)) < 2:
        raise MedsslError("a linear probe needs at least two classes among the labelled training images")
    if len(val_y) == 0:
        raise MedsslError("a linear probe needs labelled validation images to choose its regularisation")
    scaler = StandardScaler().fit(train_x)
    train_s = scaler.transform(train_x)
    best: LinearProbe | None = None
    scores: dict[float, float] = {}
    for c in sorted(c_grid):
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=class_weight)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train_s, train_y)
        probe = LinearProbe(scaler, model, c, num_classes, scores)
        scores[c] = _val_score(probe.predict_proba(val_x), val_y)
        if best is None or scores[c] > scores[best.c]:
            best = probe
    assert best is not None
    return best
