"""The study report's plots, each returned as a base64 PNG (matplotlib, Agg backend set by the caller)."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable

import numpy as np

from medssl.study.axes import NOT_PRETRAINED
from medssl.study.stats import Comparison, Metric, describe


def png(fig: object) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def same_upstream(row: dict) -> bool:
    return row["method"] in NOT_PRETRAINED or row["upstream"] == row["dataset"]


def select(rows: list[dict], **levels: object) -> list[dict]:
    return [r for r in rows if same_upstream(r) and all(r.get(k) == v for k, v in levels.items())]


def line_plot(rows: list[dict], spec: dict, x: str, y: Callable[[dict], float | None], held: dict, xlabel: str,
              ylabel: str) -> str:
    import matplotlib.pyplot as plt

    datasets = spec["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for method in spec["methods"]:
            points = []
            for level in sorted({r[x] for r in rows if r[x] is not None}):
                est = describe([y(r) for r in select(rows, dataset=dataset, method=method, **{x: level}, **held)])
                if est.n:
                    points.append((level, est))
            if not points:
                continue
            xs = [p[0] for p in points]
            means = np.array([p[1].mean for p in points])
            low = np.array([p[1].low if not math.isnan(p[1].low) else p[1].mean for p in points])
            high = np.array([p[1].high if not math.isnan(p[1].high) else p[1].mean for p in points])
            ax.errorbar(xs, means, yerr=[means - low, high - means], marker="o", capsize=3, label=method)
        levels = sorted({r[x] for r in rows if r[x] is not None})
        if len(levels) > 1 and levels[0] > 0:
            ax.set_xscale("log")
        ax.set_xticks(levels, [f"{v * 100:g} %" if x == "label_fraction" else f"{v:g}" for v in levels])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(dataset, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png(fig)


def heatmap(comparisons: list[Comparison], spec: dict, metric: Metric) -> str:
    import matplotlib.pyplot as plt

    cols = spec["datasets"]
    rows = sorted({(c.condition["method"], c.condition["upstream"]) for c in comparisons})
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, (method, upstream) in enumerate(rows):
        for j, dataset in enumerate(cols):
            diffs = [c.score.estimate for c in comparisons if c.condition["method"] == method
                     and c.condition["upstream"] == upstream and c.condition["dataset"] == dataset
                     and not math.isnan(c.score.estimate)]
            if diffs:
                grid[i, j] = float(np.mean(diffs))
    limit = max(0.01, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 0.01
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(cols), 1.2 + 0.5 * len(rows)))
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            dark = np.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * limit
            label = f"{grid[i, j]:+.3f}" if np.isfinite(grid[i, j]) else "–"
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{m} @ {u}" for m, u in rows], fontsize=8)
    ax.set_xlabel("downstream (fine-tuning) data")
    ax.set_ylabel("method @ upstream (pre-training) data")
    fig.colorbar(image, ax=ax, label=f"mean Δ {metric.name} vs scratch")
    return png(fig)


def policy_bars(rows: list[dict], spec: dict, held: dict, metric: Metric) -> str:
    import matplotlib.pyplot as plt

    policies, methods = spec["policies"], spec["methods"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(policies) * max(1, len(methods)) / 2), 3.6))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        ests = [describe([metric.value(r) for r in select(rows, method=method, policy=p, **held)]) for p in policies]
        means = np.array([e.mean for e in ests])
        low = np.array([e.mean - e.low if not math.isnan(e.low) else 0 for e in ests])
        high = np.array([e.high - e.mean if not math.isnan(e.high) else 0 for e in ests])
        ax.bar(np.arange(len(policies)) + (k - (len(methods) - 1) / 2) * width, np.nan_to_num(means), width,
               yerr=[low, high], capsize=2, label=method)
    ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric.name} (95 % CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def confusions(rows: list[dict], spec: dict, held: dict) -> str | None:
    import matplotlib.pyplot as plt

    panels = []
    for method in spec["methods"]:
        picked = [r for r in select(rows, method=method, **held)
                  if "confusion_matrix" in json.loads(r["metrics"]).get("test", {})]
        if picked:
            matrices = [np.array(json.loads(r["metrics"])["test"]["confusion_matrix"]) for r in picked]
            panels.append((method, sum(matrices), len(picked)))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 2.8), squeeze=False)
    for ax, (method, matrix, n) in zip(axes[0], panels, strict=True):
        recall = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(int(count)), ha="center", va="center", color="black" if recall[i, j] < 0.6 else "white")
        ax.set_xticks(range(len(matrix)))
        ax.set_yticks(range(len(matrix)))
        ax.set_title(f"{method} (sum of {n} seeds)", fontsize=9)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.tight_layout()
    return png(fig)
