"""BYOL's EMA target, SwAV's prototypes, and every joint-embedding method's shapes."""

import math

import pytest
import torch

from medssl.methods.registry import list_methods, parse_method
from medssl.models.encoder import BackboneSpec, Encoder

NEW_METHODS = ["moco", "byol", "swav", "barlow", "vicreg"]


def _make(method: str, spatial_dims: int = 2, **kwargs):
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, 1, width=0.125))
    [(cls, _)] = parse_method(method)
    return encoder, cls(encoder, **kwargs)


def _batch(spatial_dims: int = 2, batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, 1, *([16] * spatial_dims))


def _step(encoder, task, x: torch.Tensor, progress: float = 0.5) -> None:
    params = [p for p in [*encoder.parameters(), *task.parameters()] if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    optimizer.zero_grad()
    task(encoder, x).loss.backward()
    optimizer.step()
    task.on_step_end(encoder, progress)


def _expected_momentum(base: float, progress: float) -> float:
    return 1.0 - (1.0 - base) * (1.0 + math.cos(math.pi * progress)) / 2.0


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_registered_as_contrastive_in_2d_and_3d(method):
    assert (method, "contrastive", (2, 3)) in list_methods()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("method", NEW_METHODS)
def test_forward_shapes_and_gradients(method, spatial_dims):
    encoder, task = _make(method, spatial_dims)
    out = task(encoder, _batch(spatial_dims))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.features.shape == (4, encoder.feature_dim)
    out.loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize(("method", "targets", "online_heads"), [
    ("byol", ("target_encoder", "target_projection"), ("prediction", "projection")),
    ("moco", ("key_encoder", "key_projection"), ("projection",)),
])
def test_target_is_the_ema_of_the_online_network_and_gets_no_gradient(method, targets, online_heads):
    encoder, task = _make(method, momentum=0.99)
    target = [p for name in targets for p in getattr(task, name).parameters()]
    assert all(not p.requires_grad for p in target)
    x = _batch()
    old = [p.detach().clone() for p in target]
    params = [p for p in [*encoder.parameters(), *task.parameters()] if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    task(encoder, x).loss.backward()
    assert all(p.grad is None for p in target)
    assert all(p.grad is not None for name in online_heads for p in getattr(task, name).parameters())
    optimizer.step()
    online = _snapshot(encoder) + _snapshot(task.projection)
    task.on_step_end(encoder, 0.5)
    m = _expected_momentum(0.99, 0.5)
    changed = False
    for p, o, q in zip(target, old, online, strict=True):
        assert torch.allclose(p, m * o + (1 - m) * q, atol=1e-6)
        changed |= not torch.equal(p, o)
    assert changed


def test_momentum_copies_move_with_the_task():
    for method, copy_name in [("byol", "target_encoder"), ("moco", "key_encoder")]:
        _, task = _make(method)
        task.double()
        assert all(p.dtype == torch.float64 for p in getattr(task, copy_name).parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_swav_prototypes_stay_unit_norm(spatial_dims):
    encoder, task = _make("swav", spatial_dims)
    x = _batch(spatial_dims)
    for _ in range(3):
        _step(encoder, task, x)
        for layer in task.prototypes.heads:
            assert torch.allclose(layer.weight.norm(dim=1), torch.ones(layer.out_features), atol=1e-5)
