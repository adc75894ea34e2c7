"""Seeded, stratified, nested label-fraction subsets and imbalance subsampling.

Nesting comes from ranking: every class's examples are put in one seeded random order and a fraction
takes a prefix of that order, so for one seed the 1 % subset lies inside the 10 % subset, which lies
inside 100 %. Comparisons across fractions (and methods) are therefore paired.
"""

from __future__ import annotations

import math

import numpy as np

from medssl.data.dataset import UNLABELED
from medssl.errors import MedsslError


def _class_orders(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    # one permutation of all indices, then filtered per class: the order of a class does not depend on
    # which other classes exist, and the same seed always gives the same order
    order = rng.permutation(len(labels))
    return {int(c): order[labels[order] == c] for c in np.unique(labels[labels != UNLABELED])}


def fraction_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of the labelled examples, at least one per class, nested."""
    if not 0.0 < fraction <= 1.0:
        raise MedsslError(f"label fraction must lie in (0, 1], got {fraction}")
    orders = _class_orders(labels, seed)
    total = sum(len(o) for o in orders.values())
    wanted = round(fraction * total)
    if wanted < len(orders):
        raise MedsslError(
            f"label fraction {fraction:g} keeps {wanted} of {total} labelled images, fewer than one per class"
            f" ({len(orders)} classes); use a fraction >= {len(orders) / total:.3g}"
        )
    chosen = [order[: max(1, round(fraction * len(order)))] for order in orders.values()]
    return np.sort(np.concatenate(chosen))


def imbalance_subset(labels: np.ndarray, ratio: float, seed: int, minority: int | None = None) -> np.ndarray:
    """Indices at imbalance ``ratio`` = (largest class count) / (``minority`` count); 1 = balanced.

    Above the data's natural ratio, every other class stays whole and ``minority`` is subsampled to 1/ratio
    of the largest. Below it (e.g. ratio 1 on naturally imbalanced data) ``minority`` stays whole and every
    other class is subsampled to at most ratio x its size. Kept examples are prefixes of seeded per-class
    orders, so on each side of the natural ratio the larger subsets contain the smaller ones.
    """
    if not ratio >= 1.0:
        raise MedsslError(f"imbalance ratio must be >= 1, got {ratio}")
    orders = _class_orders(labels, seed)
    if len(orders) < 2:
        raise MedsslError("imbalance subsampling needs at least two classes")
    sizes = {c: len(o) for c, o in orders.items()}
    if minority is None:
        minority = min(sizes, key=lambda c: (sizes[c], c))
    if minority not in orders:
        raise MedsslError(f"minority class {minority} has no examples")
    largest = max(n for c, n in sizes.items() if c != minority)
    keep = max(1, math.floor(largest / ratio))
    if keep <= sizes[minority]:
        chosen = [order if c != minority else order[:keep] for c, order in orders.items()]
    else:  # the minority is too small for this ratio: shrink the others to it instead
        cap = max(1, math.floor(ratio * sizes[minority]))
        chosen = [order if c == minority else order[:cap] for c, order in orders.items()]
    return np.sort(np.concatenate(chosen))


def matched_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a stratified, seeded, nested subset of the labelled examples with about ``size`` of them
    (at least one per class): a validation set sized like the labelled training subset."""
    total = int((labels != UNLABELED).sum())
    classes = len(np.unique(labels[labels != UNLABELED]))
    if total == 0:
        raise MedsslError("a matched validation subset needs labelled validation images")
    return fraction_subset(labels, min(1.0, max(size, classes) / total), seed)
