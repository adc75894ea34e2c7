from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pytest
import torch

from medssl.views import ViewPipeline, contrastive_view, light_view, random_contrast

from .conftest import MakeBatch, all_samples_differ, repeated

RECIPES = {"contrastive": contrastive_view, "light": light_view}


def test_pipeline_applies_ops_in_order() -> None:
    pipeline = ViewPipeline([lambda t: t * 2, lambda t: t + 1])
    assert torch.equal(pipeline(torch.ones(2, 1, 4, 4)), torch.full((2, 1, 4, 4), 3.0))
    assert len(pipeline) == 2


def test_empty_pipeline_is_identity() -> None:
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(ViewPipeline([])(x), x)


def test_pipeline_registers_module_ops_and_lists_partials_in_repr() -> None:
    scale = torch.nn.Identity()
    pipeline = ViewPipeline([scale, partial(random_contrast, p=0.3)])
    assert list(pipeline.children()) == [scale]
    assert "random_contrast(p=0.3)" in repr(pipeline)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_preserve_shape_dtype_device_and_unit_range(
    make_batch: MakeBatch, device: str, recipe: str
) -> None:
    x = make_batch(batch=8, channels=2, device=device)
    out = RECIPES[recipe]()(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_give_every_sample_and_every_call_its_own_view(make_batch: MakeBatch, recipe: str) -> None:
    view = RECIPES[recipe]()
    x = repeated(make_batch(), 8)
    first, second = view(x), view(x)
    assert all_samples_differ(first)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_are_reproducible_under_the_same_seed(make_batch: MakeBatch, recipe: str) -> None:
    x = make_batch()
    torch.manual_seed(7)
    first = RECIPES[recipe]()(x)
    torch.manual_seed(7)
    assert torch.equal(RECIPES[recipe]()(x), first)


def test_light_view_stays_close_to_the_input_statistics(make_batch: MakeBatch) -> None:
    x = make_batch(batch=32)
    out = light_view()(x)
    torch.testing.assert_close(out.mean(), x.mean(), atol=0.02, rtol=0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Time the work, not OpenMP spin-waiting for a second core that a busy CI box hands out late.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("shape", "bound_s"), [((256, 1, 32, 32), 0.1), ((64, 1, 28, 28, 28), 1.0)], ids=["2d", "3d"]
)
def test_contrastive_view_is_fast_on_cpu(shape: tuple[int, ...], bound_s: float) -> None:
    # Generous bounds, about 5-10x the 1-thread time on a loaded 2-core box, so CI doesn't flake.
    view, x = contrastive_view(), torch.rand(shape)
    view(x)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        view(x)
        best = min(best, time.perf_counter() - start)
    assert best < bound_s
