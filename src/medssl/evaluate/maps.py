"""Embedding maps: a 2D t-SNE projection of frozen features, coloured by class, as a PNG.

UMAP would do as well but is not a dependency; sklearn's t-SNE is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from medssl.errors import MedsslError
from medssl.evaluate.files import write_png

MAX_POINTS = 3000  # t-SNE is quadratic-ish; a random subset this large shows the structure


def project_2d(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE coordinates (N, 2); perplexity is capped below N / 3 as t-SNE requires."""
    if len(features) < 4:
        raise MedsslError(f"an embedding map needs at least 4 images, got {len(features)}")
    perplexity = min(perplexity, (len(features) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine")
    return tsne.fit_transform(np.asarray(features, np.float64))


def embedding_map(features: np.ndarray, labels: np.ndarray, path: Path, *, class_names: list[str] | None = None,
                  title: str = "", seed: int = 0) -> np.ndarray:
    """Write the map to ``path`` (PNG) and return the plotted coordinates (of a subset beyond MAX_POINTS)."""
    if len(features) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(features), MAX_POINTS, replace=False))
        features, labels = features[keep], labels[keep]
    coords = project_2d(features, seed=seed)
    figure = Figure(figsize=(5, 5), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    for c in np.unique(labels):
        name = class_names[c] if class_names and 0 <= c < len(class_names) else ("unlabelled" if c < 0 else str(c))
        mine = labels == c
        axes.scatter(coords[mine, 0], coords[mine, 1], s=8, alpha=0.7, label=f"{name} ({mine.sum()})")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="best", fontsize=8, markerscale=2)
    axes.set_title(title or "t-SNE of frozen features", fontsize=10)
    figure.tight_layout()
    write_png(path, figure)
    return coords
