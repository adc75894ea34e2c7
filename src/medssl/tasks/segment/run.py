"""``finetune_segmentation``: one segmentation run dir, from scratch or transferring a pre-training run."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytorch_lightning as pl
from PIL import Image

from medssl import __version__
from medssl.config import SegmentConfig
from medssl.data.masks import SegData, SegSplit, load_seg_data
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.segmenter import Segmenter
from medssl.runio import save_state, write_json
from medssl.tasks.common import RunResult, load_pretrained
from medssl.tasks.segment.train import (
    PatchSampler,
    SegmentationModule,
    evaluate,
    patch_loader,
    segmentation_augmentation,
    select_threshold,
)
from medssl.training import ResumableRun, make_trainer, open_run


def load_segmentation_data(config: SegmentConfig) -> SegData:
    return load_seg_data(config.data, seed=config.seed, size=config.size, mask_suffix=config.mask_suffix,
                         fov=config.fov, channel=config.channel, val_count=config.val_count,
                         test_count=config.test_count, preprocessing=config.preprocessing())


def labelled_images(n_train: int, config: SegmentConfig) -> np.ndarray:
    """Indices of the labelled training images: a seeded choice, nested across counts for one seed."""
    count = config.label_count if config.label_count is not None else max(1, round(config.label_fraction * n_train))
    if count > n_train:
        raise MedsslError(f"label count {count} exceeds the {n_train} training images")
    return np.sort(np.random.default_rng(config.seed).permutation(n_train)[:count])


def build_segmenter(config: SegmentConfig, data: SegData) -> tuple[Segmenter, str, BackboneSpec]:
    """The model with what ``config.transfer`` asks for loaded from ``config.checkpoint``; the resolved
    transfer mode (``None`` means ``both`` when the run saved a decoder, else ``encoder``)."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.checkpoint == "scratch":
        spec = BackboneSpec(config.backbone, data.spatial_dims, data.channels, config.width)
        return Segmenter(Encoder(spec)), "none", spec
    pretrained = load_pretrained(config.checkpoint, data.image_data())
    transfer = config.transfer
    if transfer is None:
        transfer = "both" if (Path(config.checkpoint) / "decoder.pt").is_file() else "encoder"
    pl.seed_everything(config.seed, workers=True, verbose=False)
    encoder = pretrained if transfer in ("encoder", "both") else Encoder(pretrained.spec)
    model = Segmenter(encoder)
    if transfer in ("decoder", "both"):
        model.load_pretrained_decoder(config.checkpoint)
    return model, transfer, pretrained.spec


def save_predictions(folder: Path, split: SegSplit, predictions: list[np.ndarray]) -> None:
    """Binary masks as 0/255 PNG (2D) or 0/1 NIfTI (3D), named after the images."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, pred in zip(split.names, predictions, strict=True):
        mask = pred[0].astype(np.uint8)
        if mask.ndim == 2:
            Image.fromarray(mask * 255).save(folder / f"{name}.png")
        else:
            nib.save(nib.Nifti1Image(mask, np.eye(4)), str(folder / f"{name}.nii.gz"))


def finetune_segmentation(config: SegmentConfig, data: SegData | None = None, progress: bool = True) -> RunResult:
    """Train on patches of the labelled training images, select on validation Dice, report test metrics
    once (at the original resolution when the images were resized)."""
    config.validate()
    data = data if data is not None else load_segmentation_data(config)
    for split in ("train", "val", "test"):
        if split not in data.splits or len(data.splits[split]) == 0:
            raise MedsslError(f"segmentation needs '{split}' images")
    model, transfer, spec = build_segmenter(config, data)
    if config.channels_last:  # as in pre-training and classification: faster convolutions
        model.encoder.use_channels_last()
    chosen = labelled_images(len(data.splits["train"]), config)
    train = data.splits["train"].subset(chosen)

    run_dir = Path(config.out)
    sampler = PatchSampler(train, config.patch_size, config.batch_size, config.steps_per_epoch,
                           pos_fraction=config.pos_fraction, seed=config.seed)
    loader = patch_loader(sampler, config.seed)
    state = ResumableRun(run_dir, config.seed, loader, sampler=sampler, every_n_steps=config.checkpoint_every_n_steps)
    trainer = make_trainer(run_dir, config.epochs, progress=progress, accelerator=config.accelerator,
                           devices=config.devices, precision=config.precision, validate=False, callbacks=[state],
                           deterministic=config.deterministic, loggers=config.loggers)
    ckpt = open_run(trainer, run_dir, config.batch_size, config, {
        "kind": "segment", **config.to_dict(), "transfer_resolved": transfer, "backbone_spec": spec.to_dict(),
        "spatial_dims": data.spatial_dims, "train_images": train.names, "val_images": data.splits["val"].names,
        "test_images": data.splits["test"].names, "data_source": data.source, "medssl_version": __version__,
    })
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = SegmentationModule(model, data.splits["val"], config.patch_size, lr=config.lr,
                                weight_decay=config.weight_decay, augment=segmentation_augmentation(config.augment))
    start = time.perf_counter()
    with warnings.catch_warnings():  # the sampler's length is exact: it runs in the main process only
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
    train_s = time.perf_counter() - start
    best_epoch = module.restore_best(model)
    model.to("cpu")
    threshold, val_dice_at_threshold = config.threshold, None
    if threshold is None:
        threshold, val_dice_at_threshold = select_threshold(model, data.splits["val"], config.patch_size)
    test, per_image, predictions = evaluate(model, data.splits["test"], config.patch_size, threshold=threshold)
    if config.save_predictions:
        save_predictions(run_dir / "predictions", data.splits["test"], predictions)
    save_state(run_dir / "segmenter.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
    native = data.splits["test"].native_masks is not None
    metrics = {
        "test": test,
        "test_per_image": dict(zip(data.splits["test"].names, per_image, strict=True)),
        "val": module.best[0] if module.best else None,
        "val_history": module.history,
        "best_epoch": best_epoch,
        "threshold": threshold,
        "val_dice_at_threshold": val_dice_at_threshold,
        "train": {"n": len(train), "images": train.names},
        "transfer": transfer,
        "test_resolution": "original" if native else "as loaded",
        "train_duration_s": train_s,
        "duration_s": time.perf_counter() - start,
    }
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics)
