"""The notebook-facing API: ``pretrain``, ``finetune`` and helpers. The CLI is a thin shell over it."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from medssl import __version__
from medssl.config import PretrainConfig
from medssl.data.dataset import ImageData, Split
from medssl.errors import MedsslError
from medssl.evaluate.run import EvaluateConfig, embed, evaluate, retrieve  # noqa: F401  (notebook re-export)
from medssl.methods.base import Pretrainer, pretraining_lr
from medssl.methods.registry import method_kwargs, parse_method, recorded_method_args
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import (
    save_state,
    write_json,
)
from medssl.tasks.classify.run import finetune, labelled_subset, selection_subset  # noqa: F401  (re-export)
from medssl.tasks.common import (  # noqa: F401  (re-export)
    RunResult,
    fit_to_memory,
    load_image_data,
    load_pretrained,
    with_default_batch,
)
from medssl.tasks.common import execution_options as _execution
from medssl.tasks.segment.run import finetune_segmentation  # noqa: F401  (notebook re-export)
from medssl.training import ResumableRun, batch_loader, make_trainer, open_run


def pretraining_pool(data: ImageData, splits: list[str]) -> Split:
    """The unlabeled pool: images of the chosen splits (test only when asked for explicitly)."""
    parts = [data.splits[s] for s in splits if s in data.splits]
    if len(parts) == 1:  # no copy: the images may be memory-mapped and larger than memory
        return parts[0]
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def pretrain(config: PretrainConfig, data: ImageData | None = None, progress: bool = True) -> RunResult:
    """Pre-train an encoder with one or more pretext tasks; writes encoder.pt (+ decoder.pt)."""
    config.validate()
    data = load_image_data(config, data)
    task_classes = parse_method(config.method, config.weights)
    config = replace(config, method_args=recorded_method_args(task_classes, config.method_args))
    task_kwargs = method_kwargs(task_classes, config.method_args)
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
    if config.lr is None:
        config = replace(config, lr=pretraining_lr([cls for cls, _ in task_classes], batch_size))
    pl.seed_everything(config.seed, workers=True, verbose=False)
    encoder = Encoder(spec)
    if config.channels_last:
        encoder.use_channels_last()
    tasks = _build_tasks(encoder, task_classes, task_kwargs)  # before open_run: a bad value writes nothing
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
                     "spatial_dims": data.spatial_dims, "medssl_version": __version__, **plan.to_config(),
                     "data_summary": {"name": data.name, "image_shape": list(data.spatial_shape),
                                      "pool_images": len(pool), "num_classes": data.num_classes,
                                      "conventions": data.conventions and data.conventions.to_dict()}})
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


def _build_tasks(encoder: Encoder, task_classes: list, task_kwargs: list[dict]) -> list:
    tasks = []
    for (cls, _), kwargs in zip(task_classes, task_kwargs, strict=True):
        try:
            tasks.append(cls(encoder, **kwargs))
        except (ValueError, TypeError, RuntimeError) as err:  # a value the method's own checks refuse
            raise MedsslError(f"method '{cls.name}' refuses its arguments {kwargs}: {err}") from None
    return tasks
