"""Run directories: atomic writes, and a run counts as finished only once ``metrics.json`` exists."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from medssl.errors import MedsslError

COMPLETE_MARKER = "metrics.json"  # written last, atomically


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Load a tensor state_dict without ever unpickling code (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MedsslError(f"checkpoint file not found: {path}") from None
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise MedsslError(f"{path}: not a readable medssl weights file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedsslError(f"{path}: expected a state_dict of tensors")
    return state


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MedsslError(f"missing {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MedsslError(f"{path}: not valid YAML ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise MedsslError(f"{path}: expected a mapping")
    return data


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
