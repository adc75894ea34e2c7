import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.evaluate.retrieval import retrieval_metrics

BANK = np.array([0, 0, 1, 1])  # two relevant images per class in the bank


def test_recall_and_map_match_a_hand_computed_example():
    neighbours = np.array([[0, 1, 0], [0, 0, 1]])  # ranked neighbour labels of two queries
    queries = np.array([0, 1])
    m = retrieval_metrics(neighbours, queries, BANK, 2, ks=(1, 3))
    # query 0 (class 0): relevant at ranks 1 and 3 -> AP@3 = (1 + 2/3) / min(3, 2) = 5/6; hit at rank 1
    # query 1 (class 1): relevant at rank 3 only -> AP@3 = (1/3) / 2 = 1/6; no hit at rank 1
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["map@1"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["map@3"] == pytest.approx((5 / 6 + 1 / 6) / 2)
    assert m["per_class"]["0"]["map@3"] == pytest.approx(5 / 6)
    assert m["per_class"]["1"]["map@3"] == pytest.approx(1 / 6)
    assert m["per_class"]["1"]["recall@1"] == 0.0 and m["per_class"]["0"]["recall@1"] == 1.0


def test_a_perfect_ranking_scores_one_and_an_absent_class_is_nan():
    m = retrieval_metrics(np.array([[0, 0], [0, 0]]), np.array([0, 0]), BANK, 3, ks=(1, 2))
    assert m["recall@2"] == 1.0 and m["map@2"] == 1.0
    assert np.isnan(m["per_class"]["2"]["map@2"]) and m["per_class"]["2"]["n_queries"] == 0


def test_too_few_neighbours_is_an_error():
    with pytest.raises(MedsslError, match="neighbours"):
        retrieval_metrics(np.array([[0]]), np.array([0]), BANK, 2, ks=(1, 5))
