"""predictions.csv: written by every classification run, read back exactly; and the validation-chosen
decision threshold beside argmax."""

import json

import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.finetune.metrics import balanced_threshold, classification_metrics, thresholded_metrics
from medssl.finetune.predictions import SplitPredictions, read_predictions, write_predictions


def test_predictions_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=7)
    written = {"val": SplitPredictions(probs[:3], np.array([0, 2, 1]), np.array([4, 9, 11])),
               "test": SplitPredictions(probs[3:], np.array([1, 1, 0, 2]), np.arange(4))}
    path = write_predictions(tmp_path / "predictions.csv", written)
    assert path.read_text().splitlines()[0] == "split,index,label,prob_0,prob_1,prob_2"
    back = read_predictions(path)
    for split, p in written.items():
        np.testing.assert_array_equal(back[split].probs, p.probs)  # bit-exact floats
        np.testing.assert_array_equal(back[split].labels, p.labels)
        np.testing.assert_array_equal(back[split].indices, p.indices)


def test_a_malformed_predictions_file_is_one_clear_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("split,index,label,prob_0\nval,0,1,notanumber\n")
    with pytest.raises(MedsslError, match="not a number"):
        read_predictions(path)
    path.write_text("a,b\n")
    with pytest.raises(MedsslError, match="header must be"):
        read_predictions(path)


def test_balanced_threshold_finds_the_rare_class_that_argmax_misses():
    # the positives (rare) score 0.2-0.4, every negative below 0.15: argmax never predicts 1
    val_p1 = np.array([0.3, 0.4, 0.2, 0.1, 0.05, 0.12, 0.02, 0.08, 0.11, 0.01])
    val_y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    threshold = balanced_threshold(val_p1, val_y)
    assert 0.12 < threshold <= 0.2
    test_p1 = np.array([0.25, 0.35, 0.05, 0.1])
    test_y = np.array([1, 1, 0, 0])
    as_probs = lambda p: np.stack([1 - p, p], 1)  # noqa: E731
    argmax = classification_metrics(as_probs(test_p1), test_y)
    chosen = thresholded_metrics(SplitPredictions(as_probs(val_p1), val_y, np.arange(10)),
                                 SplitPredictions(as_probs(test_p1), test_y, np.arange(4)))
    assert argmax["per_class_recall"] == [1.0, 0.0]
    assert chosen["per_class_recall"] == [1.0, 1.0] and chosen["balanced_accuracy"] == 1.0
    assert chosen["threshold"] == threshold


def test_threshold_is_chosen_without_looking_at_test_labels():
    val = SplitPredictions(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]), np.arange(2))
    test_probs = np.array([[0.6, 0.4], [0.4, 0.6]])
    flipped = [thresholded_metrics(val, SplitPredictions(test_probs, y, np.arange(2)))["threshold"]
               for y in (np.array([0, 1]), np.array([1, 0]))]
    assert flipped[0] == flipped[1]


def test_every_finetune_run_writes_predictions_matching_its_metrics(tmp_path):
    from medssl.api import finetune
    from medssl.config import FinetuneConfig
    from tests.test_api import SMALL, toy_data

    data = toy_data(2, n=24)
    result = finetune(FinetuneConfig(data="toy", out=str(tmp_path / "ft"), epochs=1, min_samples_per_epoch=16,
                                     **SMALL), data=data, progress=False)
    predictions = read_predictions(result.run_dir / "predictions.csv")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(predictions) == {"val", "test"}
    for split in ("val", "test"):
        p = predictions[split]
        np.testing.assert_array_equal(p.indices, np.arange(24))
        np.testing.assert_array_equal(p.labels, data.splits[split].labels)
        recomputed = classification_metrics(p.probs, p.labels)
        assert recomputed["auc"] == pytest.approx(metrics[split]["auc"], abs=1e-12)
        assert recomputed["confusion_matrix"] == metrics[split]["confusion_matrix"]
    assert set(metrics["test"]["thresholded"]) >= {"threshold", "balanced_accuracy", "per_class_recall"}


def test_matched_validation_selects_on_a_stratified_subset_sized_like_the_labelled_set(tmp_path):
    from medssl.api import finetune
    from medssl.config import FinetuneConfig
    from tests.test_api import SMALL, toy_data

    data = toy_data(2, n=40)
    result = finetune(FinetuneConfig(data="toy", out=str(tmp_path / "ft"), epochs=1, label_fraction=0.2,
                                     val_labels="matched", min_samples_per_epoch=16, **SMALL), data=data,
                      progress=False)
    val = read_predictions(result.run_dir / "predictions.csv")["val"]
    assert result.metrics["train"]["n"] == 8 and result.metrics["selection"] == {"val_labels": "matched", "val_n": 8}
    assert len(val.indices) == 8 and np.bincount(val.labels).tolist() == [4, 4]
    np.testing.assert_array_equal(val.labels, data.splits["val"].labels[val.indices])  # positions in the source
    assert result.metrics["val"]["n"] == 8
