"""Argument types and option groups shared by several commands."""

from __future__ import annotations

import argparse
import re

from medssl.errors import MedsslError

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# a negative number or a comma-separated list of numbers starting with one: '-0.5', '-1e-3', '-1000,400'
NEGATIVE_NUMBERS = re.compile(rf"^-{_NUMBER}(?:,[-+]?{_NUMBER})*$")


class Parser(argparse.ArgumentParser):
    """One-line errors, and option values that start with a minus sign parse as written (``--window -1000,400``):
    argparse takes any token it does not recognise as a plain negative number for an option."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # argparse consults this pattern to tell values from options; no medssl option looks like a number
        self._negative_number_matcher = NEGATIVE_NUMBERS

    def error(self, message: str) -> None:  # one line instead of usage + message
        raise MedsslError(f"{self.prog}: {message}")


def window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be LOW,HIGH (e.g. -1000,400), got '{text}'") from None
    return low, high


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'") from None


def words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def numbers(kind: type, what: str):
    """Parser of comma-separated numbers: ``1.5,1.5,2`` or one value."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got '{text}'") from None
    return parse


spacing_values = numbers(float, "spacing")
patch_values = numbers(int, "patch")


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Geometry and intensity of file sources (folders, manifests, MSD, DICOM)."""
    p.add_argument("--spacing", type=spacing_values, metavar="X,Y,Z",
                   help="resample volumes to this voxel size in mm (after reorienting to RAS)")
    p.add_argument("--intensity", metavar="ct:LOW,HIGH|mr|range:LOW,HIGH",
                   help="intensity normalisation: CT window in HU (MR by percentiles), MR percentiles, or a range")


def add_run_options(p: argparse.ArgumentParser, batch_size: str) -> None:
    """Options of every training command (pretrain, finetune); ``batch_size`` describes its default."""
    p.add_argument("--data", required=True, help="npz, folder (images/volumes/DICOM, or with labels.csv), glob,"
                   " manifest .csv, MSD folder, prepared cache, medmnist:NAME[@SIZE] or synthetic:lesions2d")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help=f"samples per optimizer step (default: {batch_size})")
    p.add_argument("--memory-limit", type=float, metavar="GB",
                   help="memory a training step may use (default: what the machine has free); a batch that does "
                        "not fit trains as micro-batches with gradient accumulation, or is refused")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="resnet18", help="resnet10 | resnet18 | resnet34 | resnet50")
    p.add_argument("--width", type=float, default=1.0, help="channel width factor (0.25-0.5 for CPU)")
    p.add_argument("--size", type=int, help="resize image-folder data to SIZE per axis")
    p.add_argument("--window", type=window, help="CT intensity window LOW,HIGH for image folders")
    add_data_options(p)
    p.add_argument("--patch", type=patch_values, metavar="X[,Y,Z]",
                   help="train on random patches of volumes/images of this size (one value: every axis)")
    p.add_argument("--slices", choices=("axial", "coronal", "sagittal"), help="train on 2D slices of volumes")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--precision", default="32-true", help="32-true | 16-mixed | bf16-mixed")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep the default (channels-first) memory layout")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--resume", action="store_true",
                   help="resume the unfinished run in --out from its last checkpoint (an unfinished run of the "
                        "same options resumes anyway; this makes a missing checkpoint an error)")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps (mid-epoch resume)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy: auto | ddp | ddp_spawn | ...")
    p.add_argument("--num-nodes", type=int, default=1, help="machines for DDP (global batch = --batch-size)")
    p.add_argument("--sync-batchnorm", action="store_true", help="BatchNorm statistics over all DDP processes")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms: reproducible on GPU too, slower")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress output (by default a bar on a terminal, else one line per epoch)")
    p.add_argument("--logger", type=words, default=["csv"], metavar="NAMES",
                   help="csv | tensorboard | mlflow, several comma-separated (mlflow: a file store in RUN/mlruns)")


def run_options(args: argparse.Namespace) -> dict:
    """The ``CommonConfig`` fields given by ``add_run_options``."""
    return {
        "data": args.data, "out": args.out, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "size": args.size, "window": args.window,
        "accelerator": args.accelerator, "devices": args.devices, "precision": args.precision,
        "num_workers": args.num_workers, "overwrite": args.overwrite, "backbone": args.backbone,
        "width": args.width, "channels_last": args.channels_last, "resume": args.resume,
        "checkpoint_every_n_steps": args.checkpoint_every, "strategy": args.strategy, "num_nodes": args.num_nodes,
        "sync_batchnorm": args.sync_batchnorm, "deterministic": args.deterministic,
        "memory_limit_gb": args.memory_limit, "spacing": args.spacing, "intensity": args.intensity,
        "patch": args.patch, "slices": args.slices, "loggers": args.logger,
    }
