import math

import numpy as np
import pytest

from medssl.finetune.metrics import classification_metrics


def test_binary_metrics_match_hand_computed_values():
    # positives scored 0.9, 0.6, 0.3; negatives 0.8, 0.2, 0.1 -> 7 of 9 pairs ranked right
    p1 = np.array([0.9, 0.6, 0.3, 0.8, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = classification_metrics(np.stack([1 - p1, p1], 1), labels)
    assert m["auc"] == pytest.approx(7 / 9)
    # predictions (threshold 0.5): 1,1,0,1,0,0 -> TP 2, FN 1, FP 1, TN 2
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx([2 / 3, 2 / 3])
    assert m["per_class_precision"] == pytest.approx([2 / 3, 2 / 3])
    assert m["balanced_acc"] == pytest.approx(2 / 3)


def test_balanced_accuracy_exposes_a_classifier_that_ignores_the_rare_class():
    labels = np.array([0] * 9 + [1])
    probs = np.tile([0.9, 0.1], (10, 1))
    m = classification_metrics(probs, labels)
    assert m["acc"] == pytest.approx(0.9)
    assert m["balanced_acc"] == pytest.approx(0.5)
    assert m["per_class_recall"] == [1.0, 0.0]
    assert m["per_class_f1"][1] == 0.0


def test_multiclass_auc_is_macro_one_vs_rest():
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[labels] * 0.8 + 0.2 / 3
    assert classification_metrics(perfect, labels)["auc"] == pytest.approx(1.0)
    # classes 0 and 1 perfectly ranked (AUC 1); class 2 gets the same score everywhere (AUC 0.5)
    rows = {0: [0.7, 0.1, 0.2], 1: [0.1, 0.7, 0.2], 2: [0.4, 0.4, 0.2]}
    probs = np.array([rows[int(c)] for c in labels])
    m = classification_metrics(probs, labels)
    assert m["auc"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_auc_is_nan_when_a_class_is_missing():
    probs = np.array([[0.3, 0.7], [0.6, 0.4]])
    assert math.isnan(classification_metrics(probs, np.array([1, 1]))["auc"])
