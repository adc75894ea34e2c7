"""Relative patch location: labels, where the labelled neighbour really sits, shapes in 2D and 3D."""

import pytest
import torch

from medssl.methods.predictive.rpl import RelativePatchLocation, neighbour_offsets
from medssl.models.encoder import BackboneSpec, Encoder

SIZES = {2: (24, 24), 3: (12, 12, 12)}


def index_coded(batch: int, size: tuple[int, ...]) -> torch.Tensor:
    """Every voxel holds its own row-major index."""
    volume = torch.arange(torch.Size(size).numel(), dtype=torch.float32).reshape(1, 1, *size)
    return volume.expand(batch, 1, *size).contiguous()


def first_voxel(patches: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Coordinates (..., n) of each patch's first voxel, read back from an index-coded image."""
    flat = patches.flatten(-len(size) - 1)[..., 0].long()
    return torch.stack(torch.unravel_index(flat, size), dim=-1)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def dims(request) -> int:
    return request.param


def make_task(dims: int, **kwargs) -> tuple[Encoder, RelativePatchLocation]:
    encoder = Encoder(BackboneSpec("resnet10", dims, 1, width=0.125))
    return encoder, RelativePatchLocation(encoder, **kwargs)


def test_classes_are_the_8_or_26_neighbours(dims):
    offsets = neighbour_offsets(dims)
    assert offsets.shape == (3**dims - 1, dims)
    assert len({tuple(o) for o in offsets.tolist()}) == len(offsets)
    assert bool((offsets.abs().sum(1) > 0).all()) and int(offsets.abs().max()) == 1
    assert make_task(dims)[1].num_classes == {2: 8, 3: 26}[dims]


def test_labels_cover_every_position(dims):
    _, task = make_task(dims)  # default: every neighbour of every image, once
    x = torch.rand(4, 1, *SIZES[dims])
    _, _, targets = task.sample(x)
    assert all(sorted(row) == list(range(task.num_classes)) for row in targets.tolist())
    _, one = make_task(dims, pairs=1)  # the papers' one random neighbour per image
    _, _, targets = one.sample(torch.rand(600, 1, *SIZES[dims]))
    assert targets.shape == (600, 1) and set(targets.flatten().tolist()) == set(range(one.num_classes))


@pytest.mark.parametrize("pairs", [1, None])
def test_labelled_patch_sits_at_its_neighbour_offset(dims, pairs):
    size = SIZES[dims]
    _, task = make_task(dims, pairs=pairs)
    centre, neighbours, targets = task.sample(index_coded(64, size))
    cell = size[0] // 3
    centre_at, neighbour_at = first_voxel(centre, size), first_voxel(neighbours, size)
    step = (neighbour_at - centre_at[:, None]).float() / cell
    expected = neighbour_offsets(dims)[targets]
    assert torch.equal(step.round().long(), expected)
    # jitter never moves a patch as far as half a cell; the centre patch lies in the centre cell
    assert float((step - expected).abs().max()) < 0.5
    assert bool(((centre_at // cell) == 1).all())
    # patches are exact crops: the voxel after the first along the last axis is its right neighbour
    assert torch.equal(centre.flatten(1)[:, 1] - centre.flatten(1)[:, 0], torch.ones(64))


def test_forward_shapes_and_gradients(dims):
    encoder, task = make_task(dims)
    out = task(encoder, torch.rand(4, 1, *SIZES[dims]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (4, encoder.feature_dim)
    assert 0 <= float(out.logs["acc"]) <= 1
    out.loss.backward()
    assert all(p.grad is not None for p in task.head.parameters())
    assert encoder.net.conv1.weight.grad is not None


def test_pairs_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="pairs"):
        make_task(2, pairs=9)
