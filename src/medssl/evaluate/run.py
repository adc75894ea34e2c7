"""The notebook-facing evaluation entry points: ``evaluate`` (a results dir), ``embed`` and ``retrieve``.

Protocols: ``knn`` and ``linear`` judge frozen features of a pre-training run (or ``random``, a random-init
encoder: the baseline); ``finetune`` judges the classifier of a fine-tuning run. Every protocol reports val
and test metrics (nothing is selected on test) and test-vs-train retrieval; robustness, calibration and an
embedding map are optional.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medssl import __version__
from medssl.data.dataset import SPLITS, UNLABELED, ImageData
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from medssl.evaluate.calibration import DEFAULT_BINS, calibration_report, plot_reliability
from medssl.evaluate.checkpoints import RANDOM, FrozenClassifier, load_classifier, load_encoder
from medssl.evaluate.embeddings import Embeddings, embed_data, embed_split, map_batches, pick_device, save_embeddings
from medssl.evaluate.knn import DEFAULT_K, DEFAULT_TEMPERATURE, cosine_neighbours, knn_scores
from medssl.evaluate.linear import fit_linear_probe
from medssl.evaluate.maps import embedding_map
from medssl.evaluate.retrieval import retrieval_metrics
from medssl.evaluate.robustness import robustness_csv, robustness_table
from medssl.finetune.metrics import classification_metrics
from medssl.models.encoder import Encoder
from medssl.runio import prepare_run_dir, write_json, write_text, write_yaml

PROTOCOLS = ("knn", "linear", "finetune")
RETRIEVAL_KS = (1, 5, 10)
_MIN_PROB = 1e-6  # kNN votes can be exactly 0; their log is clipped here for NLL and temperature scaling


@dataclass
class EvaluateConfig:
    checkpoint: str  # pre-training run dir, fine-tuning run dir, or "random"
    data: str
    protocol: str
    out: str
    k: int = DEFAULT_K
    knn_temperature: float = DEFAULT_TEMPERATURE
    robustness: bool = False
    calibration: bool = False
    embedding_map: bool = False
    backbone: str = "resnet18"  # only for checkpoint "random"
    width: float = 1.0
    seed: int = 0
    batch_size: int = 256
    bins: int = DEFAULT_BINS
    size: int | None = None
    window: tuple[float, float] | None = None
    device: str = "auto"
    overwrite: bool = False

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise MedsslError(f"unknown protocol '{self.protocol}'; choose from {', '.join(PROTOCOLS)}")
        if self.k < 1:
            raise MedsslError(f"k must be >= 1, got {self.k}")
        if self.knn_temperature <= 0:
            raise MedsslError(f"kNN temperature must be > 0, got {self.knn_temperature}")
        if self.batch_size < 1:
            raise MedsslError(f"batch size must be >= 1, got {self.batch_size}")
        if self.bins < 1:
            raise MedsslError(f"calibration bins must be >= 1, got {self.bins}")
        if self.protocol == "finetune" and self.checkpoint == RANDOM:
            raise MedsslError("--protocol finetune needs a fine-tuning run as --checkpoint, not 'random'")


@dataclass
class Evaluation:
    out_dir: Path
    metrics: dict


def _require_labels(data: ImageData) -> None:
    for split in SPLITS:
        if split not in data.splits or not (data.splits[split].labels != UNLABELED).any():
            raise MedsslError(f"evaluation needs labelled '{split}' images")


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, _MIN_PROB, 1.0))


Predictor = Callable[[Tensor], Tensor]  # unit-float images -> log-probabilities


def _knn_protocol(encoder: Encoder, emb: dict[str, Embeddings], k: int, temperature: float, num_classes: int
                  ) -> tuple[Predictor, dict]:
    bank = emb["train"].labelled()
    k_used = min(k, len(bank))

    def scores(features: np.ndarray) -> np.ndarray:
        return _log(knn_scores(bank.features, bank.labels, features, num_classes, k=k_used, temperature=temperature))

    def predict(x: Tensor) -> Tensor:
        return torch.from_numpy(scores(encoder(x).float().cpu().numpy()))

    return predict, {"k": k_used, "temperature": temperature, "bank_size": len(bank)}


def _linear_protocol(encoder: Encoder, emb: dict[str, Embeddings], num_classes: int, seed: int
                     ) -> tuple[Predictor, dict]:
    train, val = emb["train"].labelled(), emb["val"].labelled()
    probe = fit_linear_probe(train.features, train.labels, val.features, val.labels, num_classes, seed=seed)

    def predict(x: Tensor) -> Tensor:
        return torch.from_numpy(_log(probe.predict_proba(encoder(x).float().cpu().numpy())))

    return predict, {"c": probe.c, "val_auc_by_c": {str(c): s for c, s in probe.val_scores.items()}}


def _write_outputs(out: Path, config: EvaluateConfig, data: ImageData, emb: dict[str, Embeddings],
                   predict: Predictor, device: torch.device) -> dict:
    """Val/test metrics, retrieval and the optional parts; returns the metrics dict."""
    metrics: dict = {}
    log_probs, labels = {}, {}
    for split in ("val", "test"):
        keep = np.flatnonzero(data.splits[split].labels >= 0)
        log_probs[split] = map_batches(predict, data.splits[split].images[keep], batch_size=config.batch_size,
                                       device=device)
        labels[split] = data.splits[split].labels[keep]
        metrics[split] = classification_metrics(np.exp(log_probs[split]), labels[split])

    bank, queries = emb["train"].labelled(), emb["test"].labelled()
    ks = tuple(sorted({*RETRIEVAL_KS, config.k}))
    neighbours, _ = cosine_neighbours(bank.features, queries.features, max(ks))
    ks = tuple(k for k in ks if k <= neighbours.shape[1])
    metrics["retrieval"] = retrieval_metrics(bank.labels[neighbours], queries.labels, bank.labels, data.num_classes,
                                             ks)
    if config.robustness:
        table = robustness_table(predict, data.splits["test"], data.spatial_dims, seed=config.seed,
                                 batch_size=config.batch_size, device=device)
        write_text(out / "robustness.csv", robustness_csv(table))
        metrics["robustness"] = table
    if config.calibration:
        report = calibration_report(log_probs["val"], labels["val"], log_probs["test"], labels["test"], config.bins)
        plot_reliability(report, out / "reliability.png", title=f"{config.protocol}: {config.checkpoint}")
        metrics["calibration"] = report
    if config.embedding_map:
        embedding_map(queries.features, queries.labels, out / "embedding_map.png", class_names=data.class_names,
                      title=f"test features, {config.checkpoint}", seed=config.seed)
        metrics["embedding_map"] = "embedding_map.png"
    return metrics


def _evaluate_into(out: Path, config: EvaluateConfig, data: ImageData, encoder: Encoder,
                   classifier: FrozenClassifier | None, device: torch.device) -> dict:
    config_dict = asdict(config)
    config_dict["window"] = list(config.window) if config.window is not None else None
    write_yaml(out / "config.yaml", {"kind": "evaluate", **config_dict, "backbone_spec": encoder.spec.to_dict(),
                                     "medssl_version": __version__})
    start = time.perf_counter()
    encoder.eval().to(device)
    emb = embed_data(encoder, data, batch_size=config.batch_size, device=device)
    save_embeddings(out / "embeddings.npz", emb)
    torch.manual_seed(config.seed)
    if config.protocol == "knn":
        predict, details = _knn_protocol(encoder, emb, config.k, config.knn_temperature, data.num_classes)
    elif config.protocol == "linear":
        predict, details = _linear_protocol(encoder, emb, data.num_classes, config.seed)
    else:
        assert classifier is not None
        classifier.eval().to(device)
        details = {}

        def predict(x: Tensor) -> Tensor:
            return F.log_softmax(classifier(x).double(), dim=1)

    metrics = {"protocol": config.protocol, "checkpoint": config.checkpoint, config.protocol: details,
               "embedding_dim": int(encoder.feature_dim)}
    metrics.update(_write_outputs(out, config, data, emb, predict, device))
    metrics["duration_s"] = time.perf_counter() - start
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate(config: EvaluateConfig, data: ImageData | None = None) -> Evaluation:
    """Evaluate a checkpoint with one protocol; writes config.yaml, embeddings.npz, optional robustness.csv,
    reliability.png and embedding_map.png, and metrics.json last."""
    config.validate()
    data = data if data is not None else load_data(config.data, size=config.size, window=config.window)
    _require_labels(data)
    device = pick_device(config.device)
    # every model is loaded (and checked against the data) before anything is written
    classifier = None
    if config.protocol == "finetune":
        classifier = load_classifier(config.checkpoint, data)
        encoder = classifier.encoder
    else:
        encoder = load_encoder(config.checkpoint, data, backbone=config.backbone, width=config.width,
                               seed=config.seed)
    out = prepare_run_dir(Path(config.out), config.overwrite)
    try:
        metrics = _evaluate_into(out, config, data, encoder, classifier, device)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a failed evaluation leaves no half-written results dir
        raise
    return Evaluation(out, metrics)


def embed(checkpoint: str, data: ImageData | str, out: str | Path, *, backbone: str = "resnet18",
          width: float = 1.0, seed: int = 0, batch_size: int = 256, device: str = "auto") -> dict[str, Embeddings]:
    """Embeddings of every split by the encoder of ``checkpoint`` (or ``random``), written to ``out`` (.npz)."""
    if not str(out).endswith(".npz"):
        raise MedsslError(f"embeddings are written to an .npz file, got '{out}'")
    data = load_data(data) if isinstance(data, str) else data
    encoder = load_encoder(checkpoint, data, backbone=backbone, width=width, seed=seed)
    emb = embed_data(encoder, data, batch_size=batch_size, device=pick_device(device))
    save_embeddings(out, emb)
    return emb


def _query_image(query: str | int, data: ImageData, split: str) -> np.ndarray:
    """(1, C, *spatial) uint8: row ``query`` of ``split``, or an image file resized to the data's shape."""
    if isinstance(query, int) or str(query).lstrip("-").isdigit():
        index = int(query)
        if split not in data.splits:
            raise MedsslError(f"the data has no '{split}' split")
        n = len(data.splits[split])
        if not 0 <= index < n:
            raise MedsslError(f"query index {index} is outside the {split} split (0..{n - 1})")
        return data.splits[split].images[index:index + 1]
    from medssl.data.folder import image_reader, load_image

    path = Path(query)
    if not path.is_file():
        raise MedsslError(f"query image not found: {path} (give an index into the '{split}' split or a file)")
    with warnings.catch_warnings():  # MONAI wraps PIL's read-only array and warns about it
        warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")
        image = load_image(path, path.name, image_reader(), None, None)  # (C, *spatial) uint8
    if image.ndim - 1 != data.spatial_dims or image.shape[0] != data.channels:
        raise MedsslError(f"query image {path.name} is {image.ndim - 1}D with {image.shape[0]} channel(s); "
                          f"the data is {data.spatial_dims}D with {data.channels}")
    if image.shape[1:] != data.spatial_shape:
        mode = "bilinear" if data.spatial_dims == 2 else "trilinear"
        resized = F.interpolate(torch.from_numpy(image[None]).float(), size=data.spatial_shape, mode=mode,
                                align_corners=False)
        return resized.round().clamp(0, 255).to(torch.uint8).numpy()
    return image[None]


def retrieve(checkpoint: str, data: ImageData | str, query: str | int, *, k: int = 5, split: str = "test",
             bank: str = "train", backbone: str = "resnet18", width: float = 1.0, seed: int = 0,
             device: str = "auto") -> list[dict]:
    """The k ``bank`` images most similar (cosine, frozen features) to the query: an index into ``split``
    or an image file. Each hit: rank, index into the bank split, label, class name, similarity."""
    if k < 1:
        raise MedsslError(f"k must be >= 1, got {k}")
    data = load_data(data) if isinstance(data, str) else data
    if bank not in data.splits:
        raise MedsslError(f"the data has no '{bank}' split to search")
    image = _query_image(query, data, split)
    encoder = load_encoder(checkpoint, data, backbone=backbone, width=width, seed=seed)
    dev = pick_device(device)
    bank_emb = embed_split(encoder, data.splits[bank], bank, device=dev)
    query_features = map_batches(encoder, image, device=dev)
    neighbours, sims = cosine_neighbours(bank_emb.features, query_features, k)
    hits = []
    for rank, (index, sim) in enumerate(zip(neighbours[0], sims[0], strict=True), start=1):
        label = int(bank_emb.labels[index])
        name = data.class_names[label] if 0 <= label < len(data.class_names) else str(label)
        hits.append({"rank": rank, "index": int(index), "label": label, "class": name, "similarity": float(sim)})
    return hits
