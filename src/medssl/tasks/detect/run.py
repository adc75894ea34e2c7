"""``finetune_detection``: one detection run dir, from scratch or with a pre-trained encoder as backbone."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from medssl import __version__
from medssl.data.dataset import Split
from medssl.data.subsets import fraction_subset
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import save_state, write_json
from medssl.tasks.common import RunResult, execution_options, fit_to_memory, load_pretrained
from medssl.tasks.detect.config import DetectConfig
from medssl.tasks.detect.data import DetData, DetSplit, load_detection_data
from medssl.tasks.detect.metrics import detection_metrics, mean_box_baseline
from medssl.tasks.detect.model import build_detector
from medssl.tasks.detect.module import DetectionModule, evaluate
from medssl.training import ResumableRun, batch_loader, make_trainer, open_run


def _encoder(config: DetectConfig, data: DetData) -> Encoder:
    if config.checkpoint == "scratch":
        pl.seed_everything(config.seed, workers=True, verbose=False)
        return Encoder(BackboneSpec(config.backbone, data.spatial_dims, data.channels, config.width))
    return load_pretrained(config.checkpoint, data)


def labelled_images(split: DetSplit, config: DetectConfig) -> np.ndarray:
    """The nested, seeded label fraction, stratified by whether an image has boxes."""
    has_boxes = np.array([int(len(b) > 0) for b in split.boxes])
    return np.sort(fraction_subset(has_boxes, config.label_fraction, config.seed))


def _predictions(split: DetSplit, boxes: list, scores: list, labels: list) -> dict:
    return {name: {"boxes": b.round(2).tolist(), "scores": s.round(4).tolist(), "labels": c.tolist()}
            for name, b, s, c in zip(split.names, boxes, scores, labels, strict=True)}


def finetune_detection(config: DetectConfig, data: DetData | None = None, progress: bool = True) -> RunResult:
    """Train on whole training images, select on val AP@IoU0.1, report test metrics once, next to those of the
    trivial predictor (one mean training box per image)."""
    config.validate()
    data = data if data is not None else load_detection_data(config.data, seed=config.seed, size=config.size)
    for split in ("train", "val", "test"):
        if split not in data.splits or len(data.splits[split]) == 0:
            raise MedsslError(f"detection needs '{split}' images")
    if not any(len(b) for b in data.splits["train"].boxes):
        raise MedsslError("the training images carry no boxes: nothing to learn to detect")
    encoder = _encoder(config, data)
    spec = encoder.spec
    train = data.splits["train"].subset(labelled_images(data.splits["train"], config))

    run_dir = Path(config.out)
    batch_size = min(config.batch_size, len(train))
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.channels_last:
        encoder.use_channels_last()
    detector = build_detector(encoder, data.num_classes, fpn_channels=config.fpn_channels,
                              anchor_size=config.anchor_size, score_threshold=config.score_threshold,
                              nms_threshold=config.nms_threshold, detections_per_image=config.detections_per_image)
    module = DetectionModule(detector, train, data.splits["val"], data.num_classes, lr=config.lr,
                             weight_decay=config.weight_decay, augment=config.augment == "flips")
    # the loader hands out (images, indices): the boxes are looked up in the split
    indexed = Split(train.images, np.arange(len(train)))
    plan = fit_to_memory(config, module, indexed, batch_size)
    loader = batch_loader(indexed, batch_size, shuffle=True, seed=config.seed,
                          min_samples=config.min_samples_per_epoch, num_workers=config.num_workers,
                          micro_batches=plan.accumulate_grad_batches)
    state = ResumableRun(run_dir, config.seed, loader, every_n_steps=config.checkpoint_every_n_steps)
    trainer = make_trainer(run_dir, config.epochs, progress=progress, validate=False, callbacks=[state],
                           accumulate_grad_batches=plan.accumulate_grad_batches, **execution_options(config))
    ckpt = open_run(trainer, run_dir, batch_size, config, {
        "kind": "detect", **config.to_dict(), "backbone_spec": spec.to_dict(), "spatial_dims": data.spatial_dims,
        "train_images": train.names, "data_source": data.name, "medssl_version": __version__,
        **plan.to_config()})
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
    train_s = time.perf_counter() - start
    best_epoch = module.restore_best(detector.network)
    detector.to("cpu")
    test = data.splits["test"]
    metrics_test, boxes, scores, labels = evaluate(detector, test, data.num_classes)
    baseline = detection_metrics(*mean_box_baseline(train.boxes, len(test)), test.boxes)
    if config.save_predictions:
        write_json(run_dir / "predictions.json", _predictions(test, boxes, scores, labels))
    save_state(run_dir / "detector.pt", {k: v.detach().cpu() for k, v in detector.network.state_dict().items()})
    metrics = {
        "test": metrics_test,
        "trivial_predictor": baseline,
        "val": next(h for h in module.history if h["epoch"] == best_epoch),
        "val_history": module.history,
        "best_epoch": best_epoch,
        "train": {"n": len(train), "boxes": int(sum(len(b) for b in train.boxes))},
        "transfer": "none" if config.checkpoint == "scratch" else "encoder",
        "train_duration_s": train_s,
        "duration_s": time.perf_counter() - start,
    }
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)
