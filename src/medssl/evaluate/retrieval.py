"""Content-based image retrieval on frozen features: recall@k and mAP@k, overall and per class.

A retrieved image is relevant when it has the query's class. recall@k is the fraction of queries with at
least one relevant image among their k nearest (the deep-metric-learning "Recall@K"). AP@k of a query is
sum_{i<=k} precision@i * rel_i / min(k, R), R = number of relevant images in the bank, so a ranking whose
top k are all relevant scores 1; mAP@k averages AP@k over queries.
"""

from __future__ import annotations

import numpy as np

from medssl.errors import MedsslError


def retrieval_metrics(neighbour_labels: np.ndarray, query_labels: np.ndarray, bank_labels: np.ndarray,
                      num_classes: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """``neighbour_labels`` (Q, K): labels of each query's ranked neighbours (K >= max(ks))."""
    if min(ks) < 1:
        raise MedsslError(f"k must be >= 1, got {min(ks)}")
    if neighbour_labels.shape[1] < max(ks):
        raise MedsslError(f"need {max(ks)} neighbours per query, got {neighbour_labels.shape[1]}")
    relevant = neighbour_labels == query_labels[:, None]  # (Q, K)
    bank_counts = np.bincount(bank_labels[bank_labels >= 0], minlength=num_classes)
    out: dict = {"n_queries": len(query_labels), "per_class": {}}
    hit_rows: dict[int, np.ndarray] = {}
    ap_rows: dict[int, np.ndarray] = {}
    for k in ks:
        top = relevant[:, :k].astype(np.float64)
        precision_at_i = top.cumsum(1) / np.arange(1, k + 1)
        denominator = np.minimum(k, bank_counts[query_labels]).clip(min=1)
        ap_rows[k] = (precision_at_i * top).sum(1) / denominator
        hit_rows[k] = top.any(1).astype(np.float64)
        out[f"recall@{k}"] = float(hit_rows[k].mean()) if len(top) else float("nan")
        out[f"map@{k}"] = float(ap_rows[k].mean()) if len(top) else float("nan")
    for c in range(num_classes):
        mine = query_labels == c
        out["per_class"][str(c)] = {
            "n_queries": int(mine.sum()),
            **{f"recall@{k}": float(hit_rows[k][mine].mean()) if mine.any() else float("nan") for k in ks},
            **{f"map@{k}": float(ap_rows[k][mine].mean()) if mine.any() else float("nan") for k in ks},
        }
    return out
