"""Shared plumbing for every training run: batched uint8 loaders whose order is a pure function of
(seed, epoch) and that shard each global batch across DDP ranks, resumable mid-epoch; a quiet, configured
Trainer that writes checkpoints atomically and carries every random state through a checkpoint."""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import Callback, Checkpoint
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from medssl.config import LOGGERS
from medssl.data.dataset import Split
from medssl.data.mapped import release_pages
from medssl.errors import MedsslError
from medssl.runio import LAST_CHECKPOINT, atomic_save, open_run_dir, write_yaml

DDP_STRATEGIES = ("ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "ddp_notebook")


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


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch) or (seed, rank): no two tuples share a stream."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpochBatchSampler(Sampler[list[int]]):
    """Global batches of indices. With ``shuffle`` an epoch's order depends only on (seed, epoch), so a run
    resumed at any epoch sees the same data as an uninterrupted one. An epoch draws ``max(n, num_samples)``
    indices (whole permutations, then part of one more), like ``RandomSampler(num_samples=...)``.

    ``shard``: under torch.distributed each rank yields its contiguous slice of every global batch (all
    ranks compute the same permutation), so the global batch stays ``batch_size`` at any world size.
    ``start_batch`` skips the first batches of the next iteration once (mid-epoch resume). The order is
    computed at the first batch (``__iter__`` is a generator), after Lightning's ``set_epoch``.

    ``weights`` (with ``shuffle``): an epoch draws its indices with replacement, in proportion to them
    (class-balanced resampling). ``micro_batches`` > 1 splits every batch into that many loader batches
    (gradient accumulation: the same samples per optimizer step, ``start_batch`` counts loader batches)."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, num_samples: int = 0,
                 drop_last: bool = False, shard: bool = True, weights: np.ndarray | None = None,
                 micro_batches: int = 1) -> None:
        self.n = n
        self.batch_size = batch_size
        # gradient accumulation: each rank's part of a global batch is yielded as this many micro-batches
        self.micro_batches = micro_batches
        self.shuffle = shuffle
        self.seed = seed
        self.num_samples = max(n, num_samples) if shuffle else n
        self.drop_last = drop_last and n > batch_size
        self.shard = shard
        self.epoch = 0
        self.start_batch = 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        if self.weights is not None and (len(self.weights) != n or not shuffle):
            raise ValueError("sampling weights need shuffle and one weight per sample")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        return rank_and_world() if self.shard else (0, 1)

    def _batch_count(self, world: int) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        # a trailing training batch must give every rank two samples (BatchNorm in training mode needs
        # more than one; under DDP all ranks must also take the same number of steps), else it is dropped
        keep_rest = rest > 0 and not self.drop_last and rest >= (2 * world if self.shuffle else 1)
        return full + int(keep_rest)

    def _parts(self, size: int) -> int:
        """Loader batches for ``size`` samples of one rank: ``micro_batches``, fewer for a trailing partial
        batch (none under ``micro_batch`` samples and, for BatchNorm, none under 2)."""
        if self.micro_batches == 1:
            return 1
        micro = self.batch_size // self.micro_batches
        return max(1, min(self.micro_batches, math.ceil(size / micro), size // 2))

    def __len__(self) -> int:
        _, world = self._world()
        count = self._batch_count(world)
        full = min(count, self.num_samples // self.batch_size)
        trailing = self._parts((self.num_samples - full * self.batch_size) // world) if count > full else 0
        return full * self.micro_batches + trailing

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's sample order: a pure function of (seed, epoch)."""
        if not self.shuffle:
            return np.arange(self.n)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).numpy()
        passes, rest = divmod(self.num_samples, self.n)
        parts = [torch.randperm(self.n, generator=generator) for _ in range(passes)]
        if rest:
            parts.append(torch.randperm(self.n, generator=generator)[:rest])
        return torch.cat(parts).numpy()

    def __iter__(self):
        rank, world = self._world()
        if self.batch_size % world:
            raise MedsslError(f"batch size {self.batch_size} is not divisible by the {world} DDP processes")
        if self.batch_size // world % self.micro_batches:
            raise MedsslError(f"{self.batch_size // world} samples per process do not split into "
                              f"{self.micro_batches} equal micro-batches")
        skip, self.start_batch = self.start_batch, 0  # loader batches (micro-batches) already trained on
        order = self.order(self.epoch)
        for b in range(self._batch_count(world)):
            batch = np.array_split(order[b * self.batch_size:(b + 1) * self.batch_size], world)[rank]
            for part in np.array_split(batch, self._parts(len(batch))):
                if skip:
                    skip -= 1
                    continue
                yield part.tolist()


def batch_loader(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0, min_samples: int = 0,
                 drop_last: bool = False, num_workers: int = 0, weights: np.ndarray | None = None,
                 micro_batches: int = 1) -> DataLoader:
    """A loader of batches. With ``shuffle``, an epoch draws ``max(len, min_samples)`` samples (several
    passes over tiny labelled subsets, so 1 % label runs still take enough optimizer steps); shuffled
    (training) loaders shard each global batch over DDP ranks, evaluation loaders do not. With per-sample
    ``weights`` (needs ``shuffle``), samples are drawn with replacement in proportion to them."""
    dataset = BatchIndexedArrays(split)
    batches = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, num_samples=min_samples,
                                drop_last=drop_last, shard=shuffle, weights=weights, micro_batches=micro_batches)
    # its own generator: creating an iterator must not draw from the global RNG the views use
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed))


def _rng_state() -> dict[str, Any]:
    """Every global random state the views and models draw from, as tensors and plain types (a checkpoint
    stays loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ResumableRun(Checkpoint):
    """Writes ``checkpoints/last.ckpt`` (the full training state) after every epoch (after its validation)
    and, optionally, every ``every_n_steps`` optimizer steps, and adds to it what Lightning leaves out:
    every rank's global RNG states (augmentation views draw from them), the train loader's position (epoch,
    batches consumed) and the last logged metrics (so a run killed after its final checkpoint still
    reports them).

    Lightning's own stateful-loader resume does not work here: ``configure_optimizers`` asks for
    ``estimated_stepping_batches``, which builds the train iterator before the loops are restored. This
    callback is restored earlier (with the modules), so the sampler is repositioned before that iterator
    exists. Under DDP each rank gets its own view stream derived from (seed, rank)."""

    def __init__(self, run_dir: Path, seed: int, loader: DataLoader, *, every_n_steps: int | None = None,
                 sampler: Any = None) -> None:
        self.path = Path(run_dir) / LAST_CHECKPOINT
        self.seed = seed
        # an EpochBatchSampler, or any object with epoch / set_epoch / start_batch (segmentation's PatchSampler,
        # which also hands over its generator through stream_state / load_stream_state)
        self.sampler: EpochBatchSampler = sampler if sampler is not None else loader.sampler  # type: ignore
        self.every_n_steps = every_n_steps
        self.restored_metrics: dict[str, float] = {}
        self._trainer: pl.Trainer | None = None
        self._start_step = 0

    def steps_run(self, trainer: pl.Trainer) -> int:
        """Optimizer steps taken by this process (a resumed run started at a later step)."""
        return trainer.global_step - self._start_step

    def logged_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """The last logged scalars, those restored from the checkpoint under the ones logged since."""
        current = {k: float(v) for k, v in trainer.callback_metrics.items()}
        return {**self.restored_metrics, **current}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if trainer.world_size > 1:
            seed_all(derived_seed(self.seed, trainer.global_rank))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step = trainer.global_step

    def _save(self, trainer: pl.Trainer) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # with gradient accumulation only after the micro-batch that completes an optimizer step
        step_done = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if self.every_n_steps and step_done and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the epoch's validation too (it runs inside the epoch): a checkpoint taken at validation end
        # makes Lightning 2.6 skip the next epoch on resume
        self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        states = [_rng_state()]
        _, world = rank_and_world()
        if world > 1:  # every rank builds the checkpoint; rank 0 writes it with all ranks' states
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, states[0])
            states = gathered
        trainer = self._trainer
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0
        loader = {"epoch": self.sampler.epoch, "batches_done": done}
        if hasattr(self.sampler, "stream_state"):
            loader["stream"] = self.sampler.stream_state(done)
        return {"rng": states, "metrics": self.logged_metrics(trainer) if trainer is not None else {},
                "loader": loader}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = checkpoint["callbacks"][self.state_key]
        self.restored_metrics = dict(state.get("metrics", {}))
        self._start_step = int(checkpoint.get("global_step", 0))
        rank, _ = rank_and_world()
        if rank < len(state["rng"]):
            _set_rng_state(state["rng"][rank])
        else:  # resumed on more processes than were saved: a fresh, still deterministic stream
            seed_all(derived_seed(self.seed, rank, len(state["rng"])))
        # the epoch the restored loop runs next; within it, skip the batches already trained on
        epoch = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        loader = state["loader"]
        self.sampler.set_epoch(epoch)
        self.sampler.start_batch = int(loader["batches_done"]) if int(loader["epoch"]) == epoch else 0
        if "stream" in loader:
            self.sampler.load_stream_state(loader["stream"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a crash or a full disk never leaves a truncated
    ``last.ckpt`` that a later resume would read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_save(Path(path), checkpoint)


def open_run(trainer: pl.Trainer, run_dir: Path, batch_size: int, config: Any, identity: dict) -> Path | None:
    """Check the global batch splits over the processes, then prepare ``run_dir`` and write its config.yaml;
    return the checkpoint to resume from (None: a fresh start). Under DDP rank 0 decides and writes; the other
    ranks, started by rank 0 once the dir is ready, only pick up its checkpoint."""
    if config.sync_batchnorm and trainer.world_size > 1 and isinstance(trainer.accelerator, CPUAccelerator):
        raise MedsslError("--sync-batchnorm needs GPUs: torch's SyncBatchNorm has no CPU implementation")
    if batch_size % trainer.world_size:
        raise MedsslError(f"the global batch size {batch_size} must be divisible by the {trainer.world_size} "
                          "processes (devices x nodes)")
    if trainer.global_rank != 0:
        _build_deferred_loggers(trainer)
        ckpt = run_dir / LAST_CHECKPOINT
        return ckpt if ckpt.is_file() else None
    ckpt = open_run_dir(run_dir, identity, overwrite=config.overwrite, resume=config.resume)
    write_yaml(run_dir / "config.yaml", identity)
    log = run_dir / "logs" / "metrics.csv"
    if ckpt is not None and log.is_file():  # the logger would replace it: keep the interrupted attempt's log
        attempt = 1 + sum(1 for _ in log.parent.glob("metrics.attempt*.csv"))
        log.rename(log.with_name(f"metrics.attempt{attempt}.csv"))
    _build_deferred_loggers(trainer)
    return ckpt


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*predicted samples.*")
    warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # our loaders are repositioned by ResumableRun, not through Lightning's stateful-loader interface
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    # ResumableRun is a second Checkpoint callback; "best" resolves to the ModelCheckpoint listed first
    warnings.filterwarnings("ignore", message=".*is called with Trainer configured with multiple.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    # on resume open_run has moved the interrupted attempt's metrics.csv aside
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")


def make_trainer(run_dir: Path, epochs: int, *, progress: bool, callbacks: list | None = None,
                 accelerator: str = "auto", devices: int | str = 1, precision: str = "32-true",
                 validate: bool = True, strategy: str = "auto", num_nodes: int = 1, sync_batchnorm: bool = False,
                 deterministic: bool = False, max_steps: int | None = None,
                 accumulate_grad_batches: int = 1, loggers: Sequence[str] = ("csv",), run_name: str | None = None,
                 tags: dict[str, str] | None = None) -> pl.Trainer:
    """``progress``: a progress bar when stdout is a terminal, else one line per epoch (a log file stays
    line-oriented). ``loggers``: any of csv (logs/metrics.csv), tensorboard (tensorboard/ event files), mlflow (a
    local file store in mlruns/), named ``run_name`` and tagged with ``tags``."""
    callbacks = list(callbacks or [])
    bar = progress and sys.stdout.isatty()
    if progress and not bar:
        callbacks.append(EpochLines())
    quiet_lightning()
    made = make_loggers(run_dir, loggers, run_name or Path(run_dir).name, tags or {})
    try:
        trainer = pl.Trainer(
            max_epochs=epochs,
            max_steps=max_steps if max_steps is not None else -1,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            sync_batchnorm=sync_batchnorm,
            deterministic=deterministic or None,
            precision=precision,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=run_dir,
            logger=[lg for lg in made if not isinstance(lg, _Deferred)],
            callbacks=callbacks,
            enable_progress_bar=bar,
            enable_model_summary=False,
            enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
            limit_val_batches=1.0 if validate else 0,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            use_distributed_sampler=False,  # our loaders shard whole batches by rank themselves
            accumulate_grad_batches=accumulate_grad_batches,
        )
    except (ValueError, MisconfigurationException) as err:  # an unknown strategy, an absent GPU, ...
        raise MedsslError(str(err).splitlines()[0]) from None
    trainer.medssl_deferred_loggers = [lg for lg in made if isinstance(lg, _Deferred)]
    return trainer



def make_loggers(run_dir: Path, names: Sequence[str], run_name: str, tags: dict[str, str]) -> list[Logger]:
    """The loggers ``names`` asks for. MLflow's is built by ``open_run`` once the run dir is ready: its store
    creates ``mlruns/`` at once, which must not make a fresh --out look like a foreign non-empty directory."""
    loggers: list[Logger] = []
    for name in dict.fromkeys(names):
        if name == "csv":
            loggers.append(CSVLogger(run_dir, name="logs", version=""))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False))
        elif name == "mlflow":
            # a tracking server when MLFLOW_TRACKING_URI names one, else a file store inside the run dir (works
            # offline; MLflow 3 keeps file stores behind an opt-in, its database store needs alembic)
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                uri = f"file:{Path(run_dir).resolve() / 'mlruns'}"
            loggers.append(_Deferred(lambda uri=uri: MLFlowLogger(experiment_name="medssl", run_name=run_name,
                                                                  tags=tags, tracking_uri=uri)))
        else:
            raise MedsslError(f"unknown logger '{name}'; choose from {', '.join(LOGGERS)}")
    return loggers


class _Deferred:
    """A logger to build later (see ``make_loggers``); ``open_run`` replaces it by the real one."""

    def __init__(self, build: Callable[[], Logger]) -> None:
        self.build = build


def _build_deferred_loggers(trainer: pl.Trainer) -> None:
    pending = getattr(trainer, "medssl_deferred_loggers", [])
    if pending:
        trainer.loggers = [*trainer.loggers, *(d.build() for d in pending)]
        trainer.medssl_deferred_loggers = []


class EpochLines(Callback):
    """One line per finished training epoch on stdout (instead of a progress bar when stdout is no terminal)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))
                 and v.numel() == 1}
        values = "  ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}  {values}",
              flush=True)
