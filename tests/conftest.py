from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Test tensors are tiny: one thread is as fast as two, and stays fast when the machine is busy
# (two OpenMP threads competing with other processes can be 100x slower).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (only present on medssl's development machines)")
    return path


@pytest.fixture
def breastmnist() -> Path:
    return shared_file("breastmnist.npz")


@pytest.fixture
def adrenal3d() -> Path:
    return shared_file("adrenalmnist3d.npz")
