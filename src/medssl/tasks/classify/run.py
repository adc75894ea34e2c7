"""``finetune``: one classification run dir (full fine-tuning, LP-FT or a linear probe)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from medssl import __version__
from medssl.config import FinetuneConfig
from medssl.data.dataset import UNLABELED, ImageData
from medssl.data.subsets import fraction_subset, imbalance_subset, matched_subset
from medssl.errors import MedsslError
from medssl.finetune.metrics import thresholded_metrics
from medssl.finetune.policies import augmentation, balanced_sample_weights, loss_policy
from medssl.finetune.predictions import PREDICTIONS_FILE, write_predictions
from medssl.finetune.probe import fit_probe_head
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import save_state, write_json
from medssl.tasks.classify.module import Classifier
from medssl.tasks.common import (
    RunResult,
    execution_options,
    fit_to_memory,
    load_image_data,
    load_pretrained,
    with_default_batch,
)
from medssl.training import ResumableRun, batch_loader, make_trainer, open_run


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
    data = load_image_data(config, data)
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
                           accumulate_grad_batches=plan.accumulate_grad_batches, **execution_options(config))
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
