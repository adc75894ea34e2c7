"""Shared plumbing for every training run: batched uint8 loaders and a quiet, configured Trainer."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from medssl.data.dataset import Split
from medssl.data.mapped import release_pages


class BatchIndexedArrays(Dataset):
    """Hands out whole batches: ``ds[list_of_indices]`` slices the uint8 array once (no per-sample
    Python work, no collation). Images stay uint8 until they reach the device."""

    def __init__(self, split: Split) -> None:
        self.images = split.images
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        order = np.sort(np.asarray(indices))  # sorted reads are kinder to memory-mapped arrays
        images = np.ascontiguousarray(self.images[order])
        release_pages(self.images)  # a memory-mapped dataset: keep resident memory flat
        return torch.from_numpy(images), torch.from_numpy(self.labels[order])


def batch_loader(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, min_samples: int = 0,
                 drop_last: bool = False, num_workers: int = 0, weights: np.ndarray | None = None) -> DataLoader:
    """A loader of batches. With ``shuffle``, an epoch draws ``max(len, min_samples)`` samples (several
    passes over tiny labelled subsets, so 1 % label runs still take enough optimizer steps). With per-sample
    ``weights`` (needs ``shuffle``), samples are drawn with replacement in proportion to them."""
    dataset = BatchIndexedArrays(split)
    if shuffle and weights is not None:
        generator = torch.Generator().manual_seed(seed)
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                        num_samples=max(len(dataset), min_samples), generator=generator)
    elif shuffle:
        generator = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(dataset, num_samples=max(len(dataset), min_samples), generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last and len(dataset) > batch_size)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*predicted samples.*")
    warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def make_trainer(run_dir: Path, epochs: int, *, progress: bool, callbacks: list | None = None,
                 accelerator: str = "auto", devices: int | str = 1, precision: str = "32-true",
                 validate: bool = True, max_steps: int | None = None) -> pl.Trainer:
    quiet_lightning()
    return pl.Trainer(
        max_epochs=epochs,
        max_steps=max_steps if max_steps is not None else -1,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs", version=""),
        callbacks=callbacks or [],
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks or []),
        limit_val_batches=1.0 if validate else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        use_distributed_sampler=False,  # our loaders yield whole batches; DDP sharding is done by index
    )
