"""Jigsaw: the Hamming permutation set, shuffling that applies the labelled permutation, 2D and 3D shapes."""

import itertools

import pytest
import torch

from medssl.methods.predictive.jigsaw import Jigsaw, hamming_permutations, shuffle_patches
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.views.patches import assemble_grid, grid_patches

SIZES = {2: (24, 24), 3: (12, 12, 12)}


def pairwise_min_distance(perms: torch.Tensor) -> int:
    distances = (perms[:, None] != perms[None]).sum(-1)
    distances.fill_diagonal_(perms.shape[1] + 1)
    return int(distances.min())


@pytest.mark.parametrize(("n_items", "n_perms"), [(9, 30), (9, 100), (8, 50), (4, 12)])
def test_hamming_permutations_are_distinct_and_spread(n_items, n_perms):
    perms, min_distance = hamming_permutations(n_items, n_perms, seed=0)
    assert perms.shape == (n_perms, n_items) and perms.dtype == torch.long
    assert torch.equal(perms.sort(1).values, torch.arange(n_items).expand(n_perms, -1))  # each row a permutation
    assert len({tuple(p) for p in perms.tolist()}) == n_perms
    assert pairwise_min_distance(perms) >= min_distance >= 2
    if (n_items, n_perms) == (9, 30):
        assert min_distance >= 6


def test_hamming_permutations_are_reproducible_from_the_seed():
    first, d1 = hamming_permutations(9, 30, seed=3)
    again, d2 = hamming_permutations(9, 30, seed=3)
    other, _ = hamming_permutations(9, 30, seed=4)
    assert torch.equal(first, again) and d1 == d2
    assert not torch.equal(first, other)
    first[0, 0] = 99  # callers get their own copy; the cached set is untouched
    assert int(hamming_permutations(9, 30, seed=3)[0][0, 0]) != 99


def test_greedy_beats_random_sets():
    _, greedy = hamming_permutations(9, 30, seed=0)
    generator = torch.Generator().manual_seed(0)
    random_set = torch.stack([torch.randperm(9, generator=generator) for _ in range(30)])
    assert greedy > pairwise_min_distance(random_set)


def make_task(dims: int, **kwargs) -> tuple[Encoder, Jigsaw]:
    encoder = Encoder(BackboneSpec("resnet10", dims, 1, width=0.125))
    return encoder, Jigsaw(encoder, **kwargs)


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_shuffling_applies_the_labelled_permutation(dims):
    # whole cells without jitter, so the inverse permutation must give back the very image
    _, task = make_task(dims, patch_fraction=1.0, jitter_fraction=0.0)
    x = torch.rand(16, 1, *SIZES[dims])
    shuffled, targets = task.scramble(x)
    assert shuffled.shape[:3] == (16, task.n_tiles, 1)
    inverse = task.perms[targets].argsort(1)
    restored = shuffle_patches(shuffled, inverse, torch.arange(16))
    assert torch.equal(assemble_grid(restored, task.grid), x)
    # and slot i really holds tile perm[i] of the row-major grid
    tiles = grid_patches(x, task.grid)
    for b, i in itertools.product(range(16), range(task.n_tiles)):
        assert torch.equal(shuffled[b, i], tiles[b, task.perms[targets[b], i]])


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_forward_shapes_and_defaults(dims):
    encoder, task = make_task(dims)
    assert task.n_tiles == {2: 9, 3: 8}[dims] and len(task.perms) == {2: 100, 3: 50}[dims]
    assert "perms" in task.state_dict()
    out = task(encoder, torch.rand(3, 1, *SIZES[dims]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (3, encoder.feature_dim)
    out.loss.backward()
    assert encoder.net.conv1.weight.grad is not None
