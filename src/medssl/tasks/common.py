"""What every downstream task's run shares: its result, the Trainer execution options, and loading the
encoder of a finished pre-training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medssl.config import CommonConfig
from medssl.data.dataset import ImageData
from medssl.errors import MedsslError
from medssl.models.encoder import Encoder
from medssl.models.init import init_scheme, load_init
from medssl.models.package import is_package, load_package_encoder
from medssl.runio import is_complete, load_state, run_backbone_spec


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
    (``imagenet:PATH``, ``medicalnet:PATH``, ``package:DIR``), checked against the data it will see."""
    if init_scheme(checkpoint):
        return load_init(str(checkpoint), data.spatial_dims, data.channels)
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise MedsslError(f"checkpoint directory not found: {run_dir}")
    if is_package(run_dir):
        return load_package_encoder(run_dir, data.spatial_dims, data.channels)
    if not is_complete(run_dir) or not (run_dir / "encoder.pt").is_file():
        raise MedsslError(f"{run_dir} is not a finished pre-training run (no metrics.json or encoder.pt)")
    encoder = Encoder(run_backbone_spec(run_dir, data.spatial_dims, data.channels))
    encoder.load_exported(load_state(run_dir / "encoder.pt"))
    return encoder
