import math

import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.evaluate.knn import cosine_neighbours, knn_scores
from medssl.finetune.metrics import classification_metrics


def test_knn_on_separable_points_is_perfect():
    rng = np.random.default_rng(0)
    # two clusters in different directions (cosine similarity ignores the norm)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bank_labels = np.repeat([0, 1], 30)
    bank = centres[bank_labels] * rng.uniform(0.5, 3, (60, 1)) + rng.normal(0, 0.05, (60, 3))
    query_labels = np.repeat([0, 1], 10)
    queries = centres[query_labels] * rng.uniform(0.5, 3, (20, 1)) + rng.normal(0, 0.05, (20, 3))
    scores = knn_scores(bank, bank_labels, queries, 2, k=5)
    metrics = classification_metrics(scores, query_labels)
    assert metrics["acc"] == 1.0 and metrics["auc"] == 1.0
    np.testing.assert_allclose(scores.sum(1), 1.0)


def test_weighted_vote_matches_a_hand_computed_case():
    bank = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    # query along x: similarities 1.0 (class 0), 0.6 (class 1), 0.0 (class 1); k = 2 keeps the first two
    scores = knn_scores(bank, labels, np.array([[2.0, 0.0]]), 2, k=2, temperature=1.0)
    p0 = math.e / (math.e + math.exp(0.6))
    np.testing.assert_allclose(scores[0], [p0, 1 - p0])
    # with all three neighbours, the two class-1 votes together outweigh... exp(1) vs exp(0.6) + exp(0)
    scores = knn_scores(bank, labels, np.array([[2.0, 0.0]]), 2, k=3, temperature=1.0)
    total = math.e + math.exp(0.6) + 1
    np.testing.assert_allclose(scores[0], [math.e / total, (math.exp(0.6) + 1) / total])
    # a low temperature makes the vote that of the single nearest neighbour
    scores = knn_scores(bank, labels, np.array([[2.0, 0.0]]), 2, k=3, temperature=0.01)
    assert scores[0, 0] > 0.999


def test_unlabelled_bank_rows_do_not_vote_and_k_is_capped_by_the_bank():
    bank = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    labels = np.array([-1, 1, 0])
    scores = knn_scores(bank, labels, np.array([[1.0, 0.0]]), 2, k=10, temperature=1.0)
    sim1 = 1 / math.sqrt(1 + 0.01**2)
    p1 = math.exp(sim1) / (math.exp(sim1) + math.exp(0.0))
    np.testing.assert_allclose(scores[0], [1 - p1, p1])


def test_neighbours_are_ranked_by_cosine_similarity():
    bank = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [5.0, 0.1]])
    idx, sims = cosine_neighbours(bank, np.array([[1.0, 0.0]]), 3)
    assert idx.tolist() == [[2, 3, 1]]
    np.testing.assert_allclose(sims[0], [1.0, 5 / math.hypot(5, 0.1), 1 / math.sqrt(2)])


def test_k_below_one_is_a_user_error():
    with pytest.raises(MedsslError, match="k must be >= 1"):
        cosine_neighbours(np.ones((3, 2)), np.ones((1, 2)), 0)
