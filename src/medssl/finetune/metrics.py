"""Classification metrics from predicted probabilities: AUC as MedMNIST reports it, and per-class detail."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Binary: AUC of the positive class (1). Multi-class: macro one-vs-rest. NaN if a class is absent."""
    num_classes = probs.shape[1]
    if len(np.unique(labels)) < num_classes:
        return float("nan")
    if num_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(num_classes))))


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """``probs`` (N, K) rows summing to 1, ``labels`` (N,) -> JSON-ready metrics."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    classes = list(range(num_classes))
    predicted = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return {
        "auc": auc(probs, labels),
        "acc": float((predicted == labels).mean()),
        "balanced_acc": float(balanced_accuracy_score(labels, predicted)),
        "per_class_recall": [float(v) for v in recall],
        "per_class_precision": [float(v) for v in precision],
        "per_class_f1": [float(v) for v in f1],
        "support": [int(v) for v in support],
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "n": len(labels),
    }
