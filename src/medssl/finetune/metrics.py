"""Classification metrics from predicted probabilities: AUC as MedMNIST reports it, and per-class detail."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


class PredictionsLike(Protocol):
    probs: np.ndarray  # (N, K)
    labels: np.ndarray  # (N,), -1 for unlabelled images


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


def balanced_threshold(positive_probs: np.ndarray, labels: np.ndarray) -> float:
    """The probability threshold (predict class 1 when p >= t) with the highest balanced accuracy on these
    (validation) images; ties go to the threshold nearest 0.5, and 0.5 when a class is absent."""
    if len(np.unique(labels)) < 2:
        return 0.5
    candidates = np.unique(np.concatenate([positive_probs, [0.5]]))
    scores = np.array([balanced_accuracy_score(labels, (positive_probs >= t).astype(np.int64)) for t in candidates])
    tied = candidates[scores >= scores.max() - 1e-12]
    return float(tied[np.argmin(np.abs(tied - 0.5))])


def thresholded_metrics(val: PredictionsLike, test: PredictionsLike) -> dict:
    """Test recall and balanced accuracy under a decision rule chosen on validation only.

    Binary: class 1 when p_1 >= the threshold that maximises validation balanced accuracy. More classes: the
    argmax of p_k / (mean validation p_k), a prior correction that keeps rare classes from being out-voted."""
    num_classes = test.probs.shape[1]
    val_labelled, test_labelled = val.labels >= 0, test.labels >= 0
    val_probs, val_labels = val.probs[val_labelled], val.labels[val_labelled]
    probs, labels = test.probs[test_labelled], test.labels[test_labelled]
    if num_classes == 2:
        threshold: float | None = balanced_threshold(val_probs[:, 1], val_labels)
        predicted = (probs[:, 1] >= threshold).astype(np.int64)
        rule = "p_1 >= threshold maximising validation balanced accuracy"
    else:
        threshold = None
        predicted = (probs / np.clip(val_probs.mean(0), 1e-12, None)).argmax(1)
        rule = "argmax p_k / mean validation p_k"
    _, recall, _, _ = precision_recall_fscore_support(labels, predicted, labels=list(range(num_classes)),
                                                      zero_division=0)
    return {"rule": rule, "threshold": threshold,
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
            "per_class_recall": [float(v) for v in recall]}
