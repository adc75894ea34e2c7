"""Per-sample predictions of a classification run: ``predictions.csv`` with one row per val / test image,
``split,index,label,prob_0,...,prob_{K-1}``, where ``index`` is the image's position in that split of the
source. Test-set resampling (bootstrap, DeLong) and external scorers read it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.errors import MedsslError
from medssl.runio import write_text

PREDICTIONS_FILE = "predictions.csv"


@dataclass(frozen=True)
class SplitPredictions:
    """Class probabilities (N, K) of one split's images, their labels (N,) and positions in the split (N,)."""

    probs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def predictions_csv(predictions: dict[str, SplitPredictions]) -> str:
    num_classes = {p.probs.shape[1] for p in predictions.values()}
    if len(num_classes) != 1:
        raise ValueError("every split's predictions must have the same number of classes")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "index", "label", *(f"prob_{k}" for k in range(num_classes.pop()))])
    for split, p in predictions.items():
        for index, label, row in zip(p.indices, p.labels, p.probs, strict=True):
            writer.writerow([split, int(index), int(label), *(repr(float(v)) for v in row)])  # repr: exact
    return out.getvalue()


def write_predictions(path: Path, predictions: dict[str, SplitPredictions]) -> Path:
    """Atomically write ``predictions.csv`` (readers never see a partial file)."""
    write_text(Path(path), predictions_csv(predictions))
    return Path(path)


def read_predictions(path: str | Path) -> dict[str, SplitPredictions]:
    """The splits of a ``predictions.csv``, each in file order."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise MedsslError(f"predictions file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MedsslError(f"{path}: not a readable predictions file ({type(err).__name__})") from None
    header = rows[0] if rows else []
    probs_columns = [c for c in header[3:] if c.startswith("prob_")]
    if header[:3] != ["split", "index", "label"] or not probs_columns or len(probs_columns) != len(header) - 3:
        raise MedsslError(f"{path}: header must be split,index,label,prob_0,...; got {','.join(header)}")
    grouped: dict[str, list[list[str]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise MedsslError(f"{path}:{line}: {len(row)} fields, expected {len(header)}")
        grouped.setdefault(row[0], []).append(row)
    try:
        return {split: SplitPredictions(np.array([[float(v) for v in r[3:]] for r in rs]),
                                        np.array([int(r[2]) for r in rs], dtype=np.int64),
                                        np.array([int(r[1]) for r in rs], dtype=np.int64))
                for split, rs in grouped.items()}
    except ValueError as err:
        raise MedsslError(f"{path}: a field is not a number ({err})") from None
