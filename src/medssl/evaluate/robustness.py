"""Robustness: a classifier's metrics on corrupted test images, per corruption and severity, and the drop
from its clean metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from medssl.data.dataset import Split
from medssl.evaluate.calibration import expected_calibration_error
from medssl.evaluate.corruptions import SEVERITIES, corrupt, corruptions_for
from medssl.evaluate.embeddings import BATCH_SIZE, map_batches
from medssl.finetune.metrics import classification_metrics

LogProbPredictor = Callable[[Tensor], Tensor]  # unit-float images (B, C, *spatial) -> log-probabilities (B, K)
REPORTED = ("auc", "acc", "balanced_acc")


def _scores(log_probs: np.ndarray, labels: np.ndarray) -> dict:
    metrics = classification_metrics(np.exp(log_probs), labels)
    return {**{k: metrics[k] for k in REPORTED}, "ece": expected_calibration_error(log_probs, labels)}


def robustness_table(predict: LogProbPredictor, split: Split, spatial_dims: int, *,
                     corruptions: list[str] | None = None, severities: tuple[int, ...] = SEVERITIES,
                     seed: int = 0, batch_size: int = BATCH_SIZE, device: torch.device | None = None) -> dict:
    """Clean and corrupted metrics of ``predict`` on the labelled images of ``split``.

    Every (corruption, severity) pass starts from the same seed, so severities differ only in strength.
    ``drop`` is clean minus corrupted (positive = worse)."""
    labelled = split.subset(np.flatnonzero(split.labels >= 0))
    labels = labelled.labels
    clean = _scores(map_batches(predict, labelled.images, batch_size=batch_size, device=device), labels)
    table: dict = {"clean": clean, "corruptions": {}, "severities": list(severities)}
    for name in corruptions or corruptions_for(spatial_dims):
        rows = {}
        for severity in severities:
            generator = torch.Generator().manual_seed(seed)

            def transform(x: Tensor, _: int, name: str = name, severity: int = severity,
                          generator: torch.Generator = generator) -> Tensor:
                return corrupt(x, name, severity, generator)

            log_probs = map_batches(predict, labelled.images, batch_size=batch_size, device=device,
                                    transform=transform)
            scores = _scores(log_probs, labels)
            scores.update({f"{k}_drop": clean[k] - scores[k] for k in REPORTED})
            rows[str(severity)] = scores
        mean_drop = float(np.mean([r["auc_drop"] for r in rows.values()]))
        table["corruptions"][name] = {"severity": rows, "mean_auc_drop": mean_drop}
    drops = [c["mean_auc_drop"] for c in table["corruptions"].values()]
    table["mean_auc_drop"] = float(np.mean(drops)) if drops else float("nan")
    return table


def robustness_csv(table: dict) -> str:
    """One line per corruption and severity (severity 0 = clean)."""
    lines = ["corruption,severity,auc,acc,balanced_acc,ece,auc_drop"]
    clean = table["clean"]
    lines.append(f"clean,0,{clean['auc']:.4f},{clean['acc']:.4f},{clean['balanced_acc']:.4f},{clean['ece']:.4f},0")
    for name, entry in table["corruptions"].items():
        for severity, r in entry["severity"].items():
            lines.append(f"{name},{severity},{r['auc']:.4f},{r['acc']:.4f},{r['balanced_acc']:.4f},{r['ece']:.4f},"
                         f"{r['auc_drop']:.4f}")
    return "\n".join(lines) + "\n"
