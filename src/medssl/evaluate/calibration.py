"""Calibration: expected calibration error (equal-width confidence bins), reliability diagrams, and
temperature scaling (Guo et al., ICML 2017) fitted on validation data by negative log-likelihood.

Everything takes log-probabilities (N, K) (logits work too: softmax ignores a per-row constant), so one
code path serves fine-tuned classifiers, linear probes and kNN votes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from medssl.errors import MedsslError
from medssl.evaluate.files import write_png

DEFAULT_BINS = 15
_LOG_T_BOUNDS = (np.log(0.02), np.log(50.0))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=1))


def reliability(logits: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Per equal-width confidence bin (lo, hi]: sample count, accuracy and mean confidence (None if empty),
    with confidence = the top class probability and accuracy = whether the top class is right."""
    if bins < 1:
        raise MedsslError(f"calibration bins must be >= 1, got {bins}")
    probs = probabilities(logits)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy, mean_confidence = acc_sum / counts, conf_sum / counts
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "accuracy": [None if n == 0 else float(a) for n, a in zip(counts, accuracy, strict=True)],
        "confidence": [None if n == 0 else float(c) for n, c in zip(counts, mean_confidence, strict=True)],
    }


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE = sum over bins of (bin share of samples) * |bin accuracy - bin mean confidence|."""
    diagram = reliability(logits, labels, bins)
    total = sum(diagram["counts"])
    if total == 0:
        return float("nan")
    return float(sum(n / total * abs(a - c) for n, a, c in
                     zip(diagram["counts"], diagram["accuracy"], diagram["confidence"], strict=True) if n))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising validation NLL of softmax(logits / T) (searched over log T)."""
    if len(labels) == 0:
        raise MedsslError("temperature scaling needs labelled validation images")
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                             bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def calibration_report(val_logits: np.ndarray, val_labels: np.ndarray, test_logits: np.ndarray,
                       test_labels: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Test ECE and NLL before and after temperature scaling fitted on val, with reliability diagrams."""
    temperature = fit_temperature(val_logits, val_labels)
    report: dict = {"bins": bins, "temperature": temperature}
    for name, t in (("before", 1.0), ("after", temperature)):
        scaled = np.asarray(test_logits, np.float64) / t
        report[name] = {"ece": expected_calibration_error(scaled, test_labels, bins),
                        "nll": negative_log_likelihood(scaled, test_labels),
                        "reliability": reliability(scaled, test_labels, bins)}
    return report


def plot_reliability(report: dict, path: Path, title: str = "") -> None:
    """Reliability diagram (bin accuracy vs confidence) before and after temperature scaling, as a PNG."""
    figure = Figure(figsize=(8, 4), dpi=100)
    for index, name in enumerate(("before", "after")):
        axes = figure.add_subplot(1, 2, index + 1)
        diagram = report[name]["reliability"]
        edges = np.asarray(diagram["edges"])
        accuracy = [np.nan if a is None else a for a in diagram["accuracy"]]
        axes.bar(edges[:-1], accuracy, width=np.diff(edges), align="edge", edgecolor="black", alpha=0.7,
                 label="accuracy")
        axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("confidence")
        axes.set_ylabel("accuracy")
        label = "before temperature scaling" if name == "before" else f"T = {report['temperature']:.2f}"
        axes.set_title(f"{label}\nECE {report[name]['ece']:.3f}", fontsize=9)
        axes.legend(loc="upper left", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    write_png(path, figure)
