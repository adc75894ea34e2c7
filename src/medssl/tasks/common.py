"""What every training run shares (pre-training and the downstream tasks): its result, the Trainer execution
options, the data a config names, the batch size and memory plan, and loading the encoder of a finished
pre-training run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytorch_lightning as pl

from medssl.config import CommonConfig
from medssl.data.dataset import ImageData, Split
from medssl.data.sources import load_data
from medssl.errors import MedsslError
from medssl.memory import MemoryPlan, default_batch_size, plan_memory, training_device
from medssl.models.encoder import Encoder
from medssl.models.init import init_scheme, load_init
from medssl.models.package import check_transfer, is_package, load_package_encoder
from medssl.runio import LAST_CHECKPOINT, is_complete, load_state, read_yaml, run_backbone_spec
from medssl.training import BatchIndexedArrays


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict


def execution_options(config: CommonConfig) -> dict:
    """The Trainer options that say where and how a run executes."""
    return {"accelerator": config.accelerator, "devices": config.devices, "num_nodes": config.num_nodes,
            "strategy": config.strategy, "sync_batchnorm": config.sync_batchnorm,
            "deterministic": config.deterministic, "precision": config.precision, "loggers": config.loggers,
            "run_name": Path(config.out).name, "tags": run_tags(config)}


def run_tags(config: CommonConfig) -> dict[str, str]:
    """What a tracker shows about a run: its data, seed and, where the config has them, method, backbone and
    starting checkpoint."""
    fields = ("data", "seed", "method", "backbone", "width", "checkpoint", "label_fraction")
    return {name: str(getattr(config, name)) for name in fields if getattr(config, name, None) is not None}


def load_pretrained(checkpoint: str | Path, data: ImageData) -> Encoder:
    """Encoder from a finished pre-training run dir, a model package or a baseline initialisation
    (``imagenet:PATH``, ``medicalnet:PATH``, ``package:DIR``), checked against the data it will see: its
    dimensions and channels, and (run dirs and packages) the data conventions its pre-training recorded
    (``data.conventions``: a mismatch an intensity option fixes is refused, a usable one logged as a warning)."""
    scheme = init_scheme(checkpoint)
    if scheme:
        encoder = load_init(str(checkpoint), data.spatial_dims, data.channels)
        if scheme == "package":
            check_transfer(Path(str(checkpoint).partition(":")[2]), data.conventions)
        return encoder
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise MedsslError(f"checkpoint directory not found: {run_dir}")
    if is_package(run_dir):
        encoder = load_package_encoder(run_dir, data.spatial_dims, data.channels)
        check_transfer(run_dir, data.conventions)
        return encoder
    if not is_complete(run_dir) or not (run_dir / "encoder.pt").is_file():
        raise MedsslError(f"{run_dir} is not a finished pre-training run (no metrics.json or encoder.pt)")
    encoder = Encoder(run_backbone_spec(run_dir, data.spatial_dims, data.channels))
    check_transfer(run_dir, data.conventions)
    encoder.load_exported(load_state(run_dir / "encoder.pt"))
    return encoder


def load_image_data(config: CommonConfig, data: ImageData | None) -> ImageData:
    """``data`` if given, else the data ``config.data`` names."""
    if data is not None:
        return data
    return load_data(config.data, size=config.size, window=config.window, preprocessing=config.preprocessing(),
                     sampling=config.sampling())


def with_default_batch(config, task: str, spatial_dims: int):
    """``config`` with its batch size decided: the asked one, else the task's default for the data's dims."""
    if config.batch_size is not None:
        return config
    return replace(config, batch_size=default_batch_size(task, spatial_dims))


def fit_to_memory(config: CommonConfig, model: pl.LightningModule, split: Split,
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
