"""Run directories: atomic writes, and a run counts as finished only once ``metrics.json`` exists."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec

COMPLETE_MARKER = "metrics.json"  # written last, atomically
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # the full training state a run resumes from
# config fields that say how a run executes, not what it computes: a resumed run may change them
EXECUTION_FIELDS = frozenset({"out", "overwrite", "resume", "accelerator", "devices", "num_nodes", "strategy",
                              "num_workers", "checkpoint_every_n_steps", "deterministic", "memory_limit_gb", "loggers",
                              # medssl.memory's plan: a resumed run keeps its micro-batch; the figures vary
                              "micro_batch", "accumulate_grad_batches", "memory_estimate_gb", "memory_available_gb",
                              "memory_source"})
# metrics that measure the machine, not the model: drop them before comparing two runs
TIMING_KEYS = frozenset({"duration_s", "train_duration_s", "images_per_second"})


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temp file in the same directory, flush it to disk, then rename over ``path``: readers see
    the old file or the whole new one, never a partial one (crash, kill or full disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600; give the mode an ordinary file would get
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MedsslError(f"cannot write {path}: {os.strerror(err.errno)}") from None
        raise


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def write_npy(path: Path, array: Any) -> None:
    """An array as a .npy file (memory-mappable with ``np.load(mmap_mode="r")``), atomically."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            np.save(file, array)
    _atomic(path, save)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def atomic_save(path: Path, obj: Any) -> None:
    """``torch.save`` through a temp file and a rename (used for Lightning checkpoints too)."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def load_state(path: Path, kind: str = "medssl", *, unwrap: bool = False) -> dict[str, torch.Tensor]:
    """Load a tensor state_dict without ever unpickling code (``weights_only=True``). ``kind`` names the file in
    errors (``imagenet``, ``medicalnet``: other tools' weights); ``unwrap`` accepts ``{"state_dict": {...}}``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        missing = "checkpoint file" if kind == "medssl" else f"{kind} weights file"
        raise MedsslError(f"{missing} not found: {path}") from None
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise MedsslError(f"{path}: not a readable {kind} weights file ({type(err).__name__})") from None
    if unwrap and isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # MedicalNet (and many training scripts) nest the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedsslError(f"{path}: expected a state_dict of tensors")
    return state


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MedsslError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MedsslError(f"{path}: not valid YAML ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise MedsslError(f"{path}: expected a mapping")
    return data


def run_backbone_spec(run_dir: Path, spatial_dims: int, channels: int) -> BackboneSpec:
    """The backbone a finished run trained, checked against the data it is about to see."""
    return checked_backbone_spec(read_yaml(run_dir / "config.yaml"), f"{run_dir}/config.yaml", spatial_dims, channels)


def checked_backbone_spec(config: dict, where: str, spatial_dims: int, channels: int) -> BackboneSpec:
    """``config["backbone_spec"]`` (a run's config.yaml or a model package's config.json), checked against the
    data it is about to see."""
    try:
        spec = BackboneSpec(**config["backbone_spec"])
    except (KeyError, TypeError) as err:
        raise MedsslError(f"{where} has no valid backbone_spec ({err})") from None
    source = Path(where).parent
    if spec.spatial_dims != spatial_dims:
        raise MedsslError(f"checkpoint {source} is {spec.spatial_dims}D but the data is {spatial_dims}D")
    if spec.in_channels != channels:
        raise MedsslError(f"checkpoint {source} expects {spec.in_channels} channel(s) but the data has {channels}")
    return spec


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETE_MARKER).is_file()


def prepare_run_dir(out: Path, overwrite: bool) -> Path:
    """Create ``out`` for a new run. A finished run is kept unless ``overwrite``; an unfinished one is
    cleared (it could never be mistaken for finished: it has no metrics.json)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MedsslError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        if is_complete(out) and not overwrite:
            raise MedsslError(f"{out} already holds a finished run; pass --overwrite or choose another --out")
        if not is_complete(out) and not (out / "config.yaml").exists():
            raise MedsslError(f"{out} is a non-empty directory that is not a medssl run; choose another --out")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MedsslError(f"cannot create output directory {out}: {err.strerror}") from None
    return out


def check_training_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that is corrupt, truncated, foreign or carries code, before Lightning reads it
    (it is then loaded again with ``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MedsslError(f"checkpoint file not found: {path}") from None
    except Exception as err:  # torch raises many types for corrupt, truncated or code-carrying files
        raise MedsslError(f"{path}: not a readable training checkpoint ({type(err).__name__}); "
                          "pass --overwrite to start the run again") from None
    if not isinstance(state, dict) or not {"state_dict", "loops", "optimizer_states"} <= state.keys():
        raise MedsslError(f"{path}: not a medssl training checkpoint (no model, optimizer and loop state)")
    if "ResumableRun" not in (state.get("callbacks") or {}):
        raise MedsslError(f"{path}: written without RNG and data-order state (another tool or an older medssl); "
                          "pass --overwrite to start the run again")


def _normalised(data: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(data))  # tuples -> lists, as stored in config.yaml


def config_differences(stored: dict, identity: dict) -> list[str]:
    """Fields of ``identity`` (a run's config.yaml entries) whose stored value differs, execution fields aside."""
    identity = _normalised(identity)
    ignored = EXECUTION_FIELDS | {"medssl_version"}
    return [k for k, v in identity.items() if k not in ignored and stored.get(k, v) != v]


def open_run_dir(out: Path, identity: dict, *, overwrite: bool, resume: bool) -> Path | None:
    """Prepare ``out`` for a run; return the checkpoint to resume from, or None to start afresh.

    An unfinished run dir of the same config (``identity``: the entries this run writes to config.yaml)
    with a ``checkpoints/last.ckpt`` is resumed automatically; ``resume`` demands that. A finished run still
    needs ``overwrite``, which always starts afresh; an unfinished run of another config is an error."""
    out = Path(out)
    checkpoint = out / LAST_CHECKPOINT
    unfinished = out.is_dir() and (out / "config.yaml").is_file() and not is_complete(out)
    if unfinished and not overwrite and checkpoint.is_file():
        differs = config_differences(read_yaml(out / "config.yaml"), identity)
        if differs:
            raise MedsslError(f"{out} holds an unfinished run with a different config ({', '.join(differs)}); "
                              "use the same options to resume it, --overwrite to discard it, or another --out")
        check_training_checkpoint(checkpoint)
        return checkpoint
    if resume:
        if is_complete(out):
            raise MedsslError(f"{out} holds a finished run: nothing to resume")
        raise MedsslError(f"nothing to resume in {out}: no checkpoint was written there (checkpoints/last.ckpt)")
    prepare_run_dir(out, overwrite)
    return None


def comparable_metrics(metrics: Any) -> Any:
    """``metrics`` without timing entries (at any depth): what must be identical between two seeded runs."""
    if isinstance(metrics, dict):
        return {k: comparable_metrics(v) for k, v in metrics.items() if k not in TIMING_KEYS}
    if isinstance(metrics, list):
        return [comparable_metrics(v) for v in metrics]
    return metrics
