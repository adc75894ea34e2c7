"""Frozen-encoder embeddings of a split (batched, no gradients, eval mode) and their .npz file."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from medssl.data.dataset import ImageData, Split
from medssl.errors import MedsslError
from medssl.evaluate.files import write_npz
from medssl.methods.base import to_unit_float

BATCH_SIZE = 256


@dataclass(frozen=True)
class Embeddings:
    """Features (N, D) float32 of one split, with labels (N,) and ids (N,): row indices into the split."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.labels)

    def labelled(self) -> Embeddings:
        keep = self.labels >= 0
        return Embeddings(self.features[keep], self.labels[keep], self.ids[keep], self.split)


def pick_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


@torch.no_grad()
def map_batches(model: Callable[[Tensor], Tensor], images: np.ndarray, *, batch_size: int = BATCH_SIZE,
                device: torch.device | None = None,
                transform: Callable[[Tensor, int], Tensor] | None = None) -> np.ndarray:
    """``model`` applied to uint8 ``images`` in batches as unit floats; ``transform(x, batch_index)`` (e.g. a
    corruption) runs on each float batch first. Returns float32 numpy outputs."""
    device = device or torch.device("cpu")
    if isinstance(model, nn.Module):
        model.eval().to(device)
    outputs = []
    for index, start in enumerate(range(0, len(images), batch_size)):
        x = to_unit_float(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device))
        if transform is not None:
            x = transform(x, index)
        outputs.append(model(x).float().cpu())
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return torch.cat(outputs).numpy()


def embed_split(encoder: nn.Module, split: Split, name: str, *, batch_size: int = BATCH_SIZE,
                device: torch.device | None = None) -> Embeddings:
    features = map_batches(encoder, split.images, batch_size=batch_size, device=device)
    return Embeddings(features, split.labels.astype(np.int64), np.arange(len(split), dtype=np.int64), name)


def embed_data(encoder: nn.Module, data: ImageData, *, batch_size: int = BATCH_SIZE,
               device: torch.device | None = None) -> dict[str, Embeddings]:
    """Embeddings of every split of ``data``."""
    return {name: embed_split(encoder, split, name, batch_size=batch_size, device=device)
            for name, split in data.splits.items()}


def save_embeddings(path: str | Path, embeddings: dict[str, Embeddings]) -> Path:
    """Atomically write ``{split}_embeddings``, ``{split}_labels`` and ``{split}_ids`` arrays to an .npz."""
    path = Path(path)
    if path.suffix != ".npz":
        raise MedsslError(f"embeddings are written to an .npz file, got '{path}'")
    if path.is_dir():
        raise MedsslError(f"{path} is a directory")
    arrays: dict[str, np.ndarray] = {}
    for name, e in embeddings.items():
        arrays.update({f"{name}_embeddings": e.features, f"{name}_labels": e.labels, f"{name}_ids": e.ids})
    write_npz(path, arrays)
    return path


def load_embeddings(path: str | Path) -> dict[str, Embeddings]:
    """Read a file written by ``save_embeddings``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise MedsslError(f"embeddings file not found: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise MedsslError(f"{path}: not a readable .npz file ({type(err).__name__})") from None
    splits = [k.removesuffix("_embeddings") for k in arrays if k.endswith("_embeddings")]
    if not splits:
        raise MedsslError(f"{path}: no '<split>_embeddings' arrays")
    out = {}
    for name in splits:
        missing = [k for k in (f"{name}_labels", f"{name}_ids") if k not in arrays]
        if missing:
            raise MedsslError(f"{path}: missing {', '.join(missing)}")
        out[name] = Embeddings(arrays[f"{name}_embeddings"].astype(np.float32), arrays[f"{name}_labels"],
                               arrays[f"{name}_ids"], name)
    return out
