"""Weighted k-nearest-neighbour classification on frozen features (cosine similarity).

The vote follows Wu et al. (CVPR 2018, instance discrimination), the usual SSL kNN monitor: each of the k
nearest training samples votes for its class with weight exp(similarity / temperature); class scores are
the normalised vote totals, so they serve as probabilities for AUC.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medssl.errors import MedsslError

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
_QUERY_CHUNK = 1024  # bounds the (queries x bank) similarity matrix held at once


def cosine_neighbours(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) into ``bank`` of each query's k most cosine-similar rows, best first, and their
    similarities (Q, k). Ties keep the lower index first."""
    if k < 1:
        raise MedsslError(f"k must be >= 1, got {k}")
    if len(bank) == 0:
        raise MedsslError("the neighbour bank is empty")
    k = min(k, len(bank))
    bank_t = F.normalize(torch.as_tensor(bank, dtype=torch.float64), dim=1)
    indices, similarities = [], []
    for start in range(0, len(queries), _QUERY_CHUNK):
        q = F.normalize(torch.as_tensor(queries[start:start + _QUERY_CHUNK], dtype=torch.float64), dim=1)
        sims = q @ bank_t.T
        order = torch.argsort(-sims, dim=1, stable=True)[:, :k]
        indices.append(order)
        similarities.append(sims.gather(1, order))
    if not indices:
        return np.zeros((0, k), np.int64), np.zeros((0, k))
    return torch.cat(indices).numpy(), torch.cat(similarities).numpy()


def knn_scores(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, num_classes: int, *,
               k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Class scores (Q, num_classes), rows summing to 1, from a temperature-weighted vote of the k nearest
    labelled bank samples."""
    if temperature <= 0:
        raise MedsslError(f"kNN temperature must be > 0, got {temperature}")
    labelled = bank_labels >= 0
    bank, bank_labels = bank[labelled], bank_labels[labelled]
    neighbours, sims = cosine_neighbours(bank, queries, k)
    # subtracting each row's best similarity leaves the normalised vote unchanged and avoids overflow
    weights = np.exp((sims - sims[:, :1]) / temperature)
    votes = np.zeros((len(queries), num_classes))
    np.add.at(votes, (np.repeat(np.arange(len(queries)), neighbours.shape[1]), bank_labels[neighbours].ravel()),
              weights.ravel())
    return votes / votes.sum(1, keepdims=True)
