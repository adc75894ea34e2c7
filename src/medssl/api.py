"""The notebook-facing API: ``pretrain``, ``finetune`` and helpers. The CLI is a thin shell over it."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from medssl import __version__
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.data.dataset import UNLABELED, ImageData, Split
from medssl.data.sources import load_data
from medssl.data.subsets import fraction_subset, imbalance_subset, matched_subset
from medssl.errors import MedsslError
from medssl.evaluate.run import EvaluateConfig, embed, evaluate, retrieve  # noqa: F401  (notebook re-export)
from medssl.finetune.classify import Classifier
from medssl.finetune.metrics import thresholded_metrics
from medssl.finetune.policies import augmentation, balanced_sample_weights, loss_policy
from medssl.finetune.predictions import PREDICTIONS_FILE, write_predictions
from medssl.finetune.probe import fit_probe_head
from medssl.finetune.segmentation_run import finetune_segmentation  # noqa: F401  (notebook re-export)
from medssl.memory import MemoryPlan, default_batch_size, plan_memory, training_device
from medssl.methods.base import Pretrainer
from medssl.methods.registry import parse_method
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import (
    LAST_CHECKPOINT,
    read_yaml,
    save_state,
    write_json,
)
from medssl.tasks.common import RunResult, load_pretrained
from medssl.tasks.common import execution_options as _execution
from medssl.training import BatchIndexedArrays, ResumableRun, batch_loader, make_trainer, open_run


def _load(config: PretrainConfig | FinetuneConfig, data: ImageData | None) -> ImageData:
    return data if data is not None else load_data(config.data, size=config.size, window=config.window)


def pretraining_pool(data: ImageData, splits: list[str]) -> Split:
    """The unlabeled pool: images of the chosen splits (test only when asked for explicitly)."""
    parts = [data.splits[s] for s in splits if s in data.splits]
    if len(parts) == 1:  # no copy: the images may be memory-mapped and larger than memory
        return parts[0]
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
    config = with_default_batch(config, "pretrain", data.spatial_dims)
    batch_size = min(config.batch_size, len(pool))
    pl.seed_everything(config.seed, workers=True, verbose=False)
    encoder = Encoder(spec)
    if config.channels_last:
        encoder.use_channels_last()
    tasks = [cls(encoder) for cls, _ in task_classes]
    model = Pretrainer(encoder, tasks, [w for _, w in task_classes], data.num_classes,
                       lr=config.lr, weight_decay=config.weight_decay)
    whole_batch = [cls.name for cls, _ in task_classes if cls.family == "contrastive"]
    plan = fit_to_memory(config, model, pool, batch_size, accumulation_refused=(
        f"the {' and '.join(whole_batch)} loss compares each sample with the rest of its batch in one step"
        if whole_batch else None))
    loader = batch_loader(pool, batch_size, shuffle=True, seed=config.seed, drop_last=True,
                          num_workers=config.num_workers, micro_batches=plan.accumulate_grad_batches)
    state = ResumableRun(run_dir, config.seed, loader, every_n_steps=config.checkpoint_every_n_steps)
    # the Trainer first: an impossible device request must fail before anything is written
    trainer = make_trainer(run_dir, config.epochs, progress=progress, validate=False, callbacks=[state],
                           max_steps=config.max_steps, accumulate_grad_batches=plan.accumulate_grad_batches,
                           **_execution(config))
    ckpt = open_run(trainer, run_dir, batch_size, config,
                    {"kind": "pretrain", **config.to_dict(), "backbone_spec": spec.to_dict(),
                     "spatial_dims": data.spatial_dims, "medssl_version": __version__, **plan.to_config()})
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
    duration = time.perf_counter() - start

    logged = {k.removeprefix("train/"): v for k, v in state.logged_metrics(trainer).items() if k.startswith("train/")}
    seen = state.steps_run(trainer) * batch_size
    metrics = {"train": logged, "epochs": config.epochs, "steps": trainer.global_step,
               "images_per_second": seen / duration, "duration_s": duration}
    if trainer.global_rank == 0:  # under DDP every rank trains; one writes
        save_state(run_dir / "encoder.pt", encoder.export_state())
        decoder = model.decoder()
        if decoder is not None:
            save_state(run_dir / "decoder.pt", {k: v.detach().cpu() for k, v in decoder.state_dict().items()})
            # the whole generative task (SparK's mask tokens too): anomaly detection reconstructs with it
            generative = next(t for t in tasks if t.decoder is not None)
            save_state(run_dir / "reconstruction.pt", {k: v.detach().cpu() for k, v in generative.state_dict().items()})
        write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)


def with_default_batch(config, task: str, spatial_dims: int):
    """``config`` with its batch size decided: the asked one, else the task's default for the data's dims."""
    if config.batch_size is not None:
        return config
    return replace(config, batch_size=default_batch_size(task, spatial_dims))


def fit_to_memory(config: PretrainConfig | FinetuneConfig, model: pl.LightningModule, split: Split,
                  batch_size: int, accumulation_refused: str | None = None) -> MemoryPlan:
    """Check the step fits in memory before anything is written (``medssl.memory``); an unfinished run that
    resumes keeps its micro-batch (its checkpoint counts loader batches)."""
    if config.devices * config.num_nodes > 1:  # every DDP rank would measure for itself and might disagree
        return MemoryPlan(batch_size, batch_size, 1, source="not checked under DDP")
    stored = Path(config.out) / "config.yaml"
    resumed = None
    if not config.overwrite and (Path(config.out) / LAST_CHECKPOINT).is_file() and stored.is_file():
        previous = read_yaml(stored)
        if previous.get("batch_size") == config.batch_size:
            resumed = previous.get("micro_batch")
    sample = BatchIndexedArrays(split)
    return plan_memory(model, lambda n: sample[list(range(n))], batch_size, training_device(config.accelerator),
                       precision=config.precision, limit_gb=config.memory_limit_gb,
                       accumulation_refused=accumulation_refused, micro_batch=resumed)


def labelled_subset(data: ImageData, config: FinetuneConfig) -> np.ndarray:
    """Indices into train: imbalance subsampling first, then the nested label fraction."""
    labels = data.splits["train"].labels
    indices = np.arange(len(labels))
    if config.imbalance_ratio is not None:
        indices = imbalance_subset(labels, config.imbalance_ratio, config.seed)
    chosen = fraction_subset(labels[indices], config.label_fraction, config.seed)
    return indices[chosen]


def finetune(config: FinetuneConfig, data: ImageData | None = None, progress: bool = True) -> RunResult:
    """Fine-tune a classifier (full, LP-FT, or a linear probe); selects on validation (AUC), reports test
    metrics once, and writes per-image val/test probabilities to predictions.csv."""
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
    val_idx = selection_subset(data, config, len(train))
    val = data.splits["val"].subset(val_idx)

    run_dir = Path(config.out)
    config = with_default_batch(config, "finetune", data.spatial_dims)
    batch_size = min(config.batch_size, len(train))
    counts = [int((train.labels == c).sum()) for c in range(data.num_classes)]
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.channels_last:
        encoder.use_channels_last()
    model = Classifier(encoder, data.num_classes, linear_probe=config.linear_probe, lr=config.lr,
                       weight_decay=config.weight_decay, augment=augmentation(config.augment),
                       loss=loss_policy(config.loss, counts, focal_gamma=config.focal_gamma,
                                        label_smoothing=config.label_smoothing, mixup_alpha=config.mixup_alpha),
                       encoder_lr_mult=config.encoder_lr_mult)
    plan = fit_to_memory(config, model, train, batch_size)
    loaders = {
        "train": batch_loader(train, batch_size, shuffle=True, seed=config.seed,
                              min_samples=config.min_samples_per_epoch, num_workers=config.num_workers,
                              weights=balanced_sample_weights(train.labels) if config.balanced_sampling else None,
                              micro_batches=plan.accumulate_grad_batches),
        "val": batch_loader(val, 256, shuffle=False),
        "test": batch_loader(data.splits["test"], 256, shuffle=False),
    }
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/score", mode="max",
                           save_top_k=1, save_weights_only=True)
    callbacks = [best, ResumableRun(run_dir, config.seed, loaders["train"],
                                    every_n_steps=config.checkpoint_every_n_steps)]
    trainer = make_trainer(run_dir, config.epochs, progress=progress, callbacks=callbacks,
                           accumulate_grad_batches=plan.accumulate_grad_batches, **_execution(config))
    ckpt = open_run(trainer, run_dir, batch_size, config,
                    {"kind": "finetune", **config.to_dict(), "backbone_spec": spec.to_dict(),
                     "train_size": len(train), "train_class_counts": counts, "medssl_version": __version__,
                     **plan.to_config()})
    start = time.perf_counter()
    probe = None
    if config.linear_probe or config.lp_ft:  # the head starts converged (LP-FT) or is the whole probe
        head, probe = fit_probe_head(encoder, train, val, data.num_classes, seed=config.seed,
                                     calibrate_bn=config.lp_ft)
        model.head.load_state_dict(head)
    if config.linear_probe:  # nothing left to train: the regularisation was chosen on validation
        best_epoch = None
        trainer.validate(model, dataloaders=loaders["val"], verbose=False)
        trainer.test(model, dataloaders=loaders["test"], verbose=False)
    else:
        trainer.fit(model, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"], ckpt_path=ckpt,
                    weights_only=True)
        best_epoch = _best_epoch(best)
        trainer.validate(model, dataloaders=loaders["val"], ckpt_path="best", verbose=False)
        trainer.test(model, dataloaders=loaders["test"], ckpt_path="best", verbose=False)
    duration = time.perf_counter() - start
    model.predictions["val"] = replace(model.predictions["val"], indices=val_idx)
    model.results["test"]["thresholded"] = thresholded_metrics(model.predictions["val"], model.predictions["test"])
    metrics = {"test": model.results["test"], "val": model.results["val"],
               "train": {"n": len(train), "class_counts": counts}, "best_epoch": best_epoch,
               "selection": {"val_labels": config.val_labels, "val_n": len(val)},
               "duration_s": duration}
    if probe is not None:
        metrics["probe"] = probe
    if trainer.global_rank == 0:
        save_state(run_dir / "classifier.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
        write_predictions(run_dir / PREDICTIONS_FILE, {"val": model.predictions["val"],
                                                       "test": model.predictions["test"]})
        write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)


def selection_subset(data: ImageData, config: FinetuneConfig, labelled: int) -> np.ndarray:
    """Indices into val of the images that select the model: all (``full``), or a stratified subset sized like
    the labelled training subset (``matched``: what a study with that few labels could really hold out)."""
    labels = data.splits["val"].labels
    if config.val_labels == "matched":
        return matched_subset(labels, labelled, config.seed)
    return np.arange(len(labels))


def _best_epoch(callback: ModelCheckpoint) -> int | None:
    path = callback.best_model_path
    if not path:
        raise MedsslError("no model was selected: validation produced no finite score")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state.get("epoch", -1))


