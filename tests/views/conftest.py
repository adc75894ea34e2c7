from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
SIZES = {2: (24, 24), 3: (12, 12, 12)}

MakeBatch = Callable[..., torch.Tensor]


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def spatial_dims(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_batch(spatial_dims: int) -> MakeBatch:
    """Random (B, C, *spatial) batch in [0, 1] with the test's dimensionality."""

    def make(
        batch: int = 8,
        channels: int = 1,
        size: tuple[int, ...] | None = None,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        seed: int = 0,
    ) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, channels, *(size or SIZES[spatial_dims]))
        return torch.rand(shape, generator=generator, dtype=dtype).to(device)

    return make


def repeated(x: torch.Tensor, batch: int) -> torch.Tensor:
    """The first sample of x repeated ``batch`` times, to expose per-sample parameters."""
    return x[:1].expand(batch, *x.shape[1:]).contiguous()


def all_samples_differ(out: torch.Tensor) -> bool:
    flat = out.flatten(1)
    return all(not torch.allclose(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))
