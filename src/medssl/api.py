"""The notebook-facing API: ``pretrain``, ``finetune`` and helpers. The CLI is a thin shell over it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from medssl import __version__
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.dataset import UNLABELED, ImageData, Split
from medssl.data.sources import load_data
from medssl.data.subsets import fraction_subset, imbalance_subset
from medssl.errors import MedsslError
from medssl.finetune.classify import Classifier
from medssl.methods.base import Pretrainer
from medssl.methods.registry import parse_method
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import (
    is_complete,
    load_state,
    prepare_run_dir,
    read_yaml,
    save_state,
    write_json,
    write_yaml,
)
from medssl.training import batch_loader, make_trainer
from medssl.views import light_view


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict


def _load(config: PretrainConfig | FinetuneConfig, data: ImageData | None) -> ImageData:
    return data if data is not None else load_data(config.data, size=config.size, window=config.window)


def pretraining_pool(data: ImageData, splits: list[str]) -> Split:
    """The unlabeled pool: images of the chosen splits (test only when asked for explicitly)."""
    parts = [data.splits[s] for s in splits if s in data.splits]
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def pretrain(config: PretrainConfig, data: ImageData | None = None, progress: bool = True) -> RunResult:
    """Pre-train an encoder with one or more pretext tasks; writes encoder.pt (+ decoder.pt)."""
    config.validate()
    data = _load(config, data)
    task_classes = parse_method(config.method, config.weights)
    for cls, _ in task_classes:
        if data.spatial_dims not in cls.spatial_dims:
            raise MedsslError(f"method '{cls.name}' does not support {data.spatial_dims}D data")
    spec = BackboneSpec(config.backbone, data.spatial_dims, data.channels, config.width)
    pool = pretraining_pool(data, config.pretrain_splits)
    if len(pool) < 2:
        raise MedsslError(f"pre-training needs at least 2 images, the pool has {len(pool)}")

    run_dir = Path(config.out)
    # the Trainer first: an impossible device request must fail before anything is written
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0)
    trainer = make_trainer(run_dir, config.epochs, progress=progress, callbacks=[checkpoints],
                           accelerator=config.accelerator, devices=config.devices, precision=config.precision,
                           validate=False)
    prepare_run_dir(run_dir, config.overwrite)
    write_yaml(run_dir / "config.yaml", {"kind": "pretrain", **config.to_dict(), "backbone_spec": spec.to_dict(),
                                         "spatial_dims": data.spatial_dims, "medssl_version": __version__})
    pl.seed_everything(config.seed, workers=True, verbose=False)
    encoder = Encoder(spec)
    tasks = [cls(encoder) for cls, _ in task_classes]
    model = Pretrainer(encoder, tasks, [w for _, w in task_classes], data.num_classes,
                       lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(pool))
    loader = batch_loader(pool, batch_size, shuffle=True, seed=config.seed, drop_last=True,
                          num_workers=config.num_workers)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader)
    duration = time.perf_counter() - start

    save_state(run_dir / "encoder.pt", encoder.export_state())
    decoder = model.decoder()
    if decoder is not None:
        save_state(run_dir / "decoder.pt", {k: v.detach().cpu() for k, v in decoder.state_dict().items()})
    logged = {k.removeprefix("train/"): float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("train/")}
    seen = trainer.global_step * batch_size
    metrics = {"train": logged, "epochs": config.epochs, "steps": trainer.global_step,
               "images_per_second": seen / duration, "duration_s": duration}
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)


def load_pretrained(checkpoint: str | Path, data: ImageData) -> Encoder:
    """Encoder from a finished pre-training run dir, checked against the data it will see."""
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise MedsslError(f"checkpoint directory not found: {run_dir}")
    if not is_complete(run_dir) or not (run_dir / "encoder.pt").is_file():
        raise MedsslError(f"{run_dir} is not a finished pre-training run (no metrics.json or encoder.pt)")
    config = read_yaml(run_dir / "config.yaml")
    try:
        spec = BackboneSpec(**config["backbone_spec"])
    except (KeyError, TypeError) as err:
        raise MedsslError(f"{run_dir}/config.yaml has no valid backbone_spec ({err})") from None
    if spec.spatial_dims != data.spatial_dims:
        raise MedsslError(f"checkpoint {run_dir} is {spec.spatial_dims}D but the data is {data.spatial_dims}D")
    if spec.in_channels != data.channels:
        raise MedsslError(
            f"checkpoint {run_dir} expects {spec.in_channels} channel(s) but the data has {data.channels}"
        )
    encoder = Encoder(spec)
    encoder.load_exported(load_state(run_dir / "encoder.pt"))
    return encoder


def labelled_subset(data: ImageData, config: FinetuneConfig) -> np.ndarray:
    """Indices into train: imbalance subsampling first, then the nested label fraction."""
    labels = data.splits["train"].labels
    indices = np.arange(len(labels))
    if config.imbalance_ratio is not None:
        indices = imbalance_subset(labels, config.imbalance_ratio, config.seed)
    chosen = fraction_subset(labels[indices], config.label_fraction, config.seed)
    return indices[chosen]


def finetune(config: FinetuneConfig, data: ImageData | None = None, progress: bool = True) -> RunResult:
    """Fine-tune (or linear-probe) a classifier; selects on val AUC, reports test metrics once."""
    config.validate()
    data = _load(config, data)
    for split in ("train", "val", "test"):
        if split not in data.splits or not (data.splits[split].labels != UNLABELED).any():
            raise MedsslError(f"fine-tuning needs labelled '{split}' images")
    if config.checkpoint == "scratch":
        if config.linear_probe:
            raise MedsslError("a linear probe needs a pre-trained --checkpoint (it is meaningless from scratch)")
        spec = BackboneSpec(config.backbone, data.spatial_dims, data.channels, config.width)
        pl.seed_everything(config.seed, workers=True, verbose=False)
        encoder = Encoder(spec)
    else:
        encoder = load_pretrained(config.checkpoint, data)
        spec = encoder.spec
    train_idx = labelled_subset(data, config)
    train = data.splits["train"].subset(train_idx)

    run_dir = Path(config.out)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/score", mode="max",
                           save_top_k=1, save_weights_only=True)
    trainer = make_trainer(run_dir, config.epochs, progress=progress, callbacks=[best],
                           accelerator=config.accelerator, devices=config.devices, precision=config.precision)
    prepare_run_dir(run_dir, config.overwrite)
    counts = [int((train.labels == c).sum()) for c in range(data.num_classes)]
    write_yaml(run_dir / "config.yaml", {"kind": "finetune", **config.to_dict(), "backbone_spec": spec.to_dict(),
                                         "train_size": len(train), "train_class_counts": counts,
                                         "medssl_version": __version__})
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model = Classifier(encoder, data.num_classes, linear_probe=config.linear_probe, lr=config.lr,
                       weight_decay=config.weight_decay, augment=light_view() if config.augment == "light" else None)
    batch_size = min(config.batch_size, len(train))
    loaders = {
        "train": batch_loader(train, batch_size, shuffle=True, seed=config.seed,
                              min_samples=config.min_samples_per_epoch, num_workers=config.num_workers),
        "val": batch_loader(data.splits["val"], 256, shuffle=False),
        "test": batch_loader(data.splits["test"], 256, shuffle=False),
    }
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"])
    best_epoch = _best_epoch(best)
    trainer.validate(model, dataloaders=loaders["val"], ckpt_path="best", verbose=False)
    trainer.test(model, dataloaders=loaders["test"], ckpt_path="best", verbose=False)
    duration = time.perf_counter() - start
    metrics = {"test": model.results["test"], "val": model.results["val"],
               "train": {"n": len(train), "class_counts": counts}, "best_epoch": best_epoch,
               "duration_s": duration}
    save_state(run_dir / "classifier.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)


def _best_epoch(callback: ModelCheckpoint) -> int | None:
    path = callback.best_model_path
    if not path:
        raise MedsslError("no model was selected: validation produced no finite score")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state.get("epoch", -1))


from medssl.finetune.segmentation_run import finetune_segmentation  # noqa: E402,F401  (re-export)
