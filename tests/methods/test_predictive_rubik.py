"""Rubik's cube+: 3D only; cubes are shuffled by the labelled permutation and turned as labelled."""

import itertools

import pytest
import torch

from medssl.methods.predictive.rubik import RubiksCube, mask_cubes, rotate_cubes
from medssl.methods.registry import list_methods
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.views.patches import grid_patches

PLANES = {1: (-2, -1), 2: (-3, -1), 3: (-3, -2)}  # class -> rot90 plane of a half turn about axis class - 1


def make_task(**kwargs) -> tuple[Encoder, RubiksCube]:
    encoder = Encoder(BackboneSpec("resnet10", 3, 1, width=0.125))
    return encoder, RubiksCube(encoder, **kwargs)


def test_is_registered_for_3d_only():
    assert ("rubik", "predictive", (3,)) in list_methods()
    with pytest.raises(ValueError, match="3D"):
        RubiksCube(Encoder(BackboneSpec("resnet10", 2, 1, width=0.125)))


def test_half_turn_about_each_axis():
    cubes = torch.rand(4, 2, 3, 4, 5)
    rotations = torch.tensor([0, 1, 2, 3])
    out = rotate_cubes(cubes, rotations)
    assert torch.equal(out[0], cubes[0])
    for k in (1, 2, 3):
        assert torch.equal(out[k], torch.rot90(cubes[k], 2, PLANES[k]))
        # a half turn about axis a keeps that axis and reverses the two others
        flipped = [d for d in (-3, -2, -1) if d != k - 4]
        assert torch.equal(out[k], cubes[k].flip(flipped))


def test_scrambled_cubes_are_the_labelled_permutation_and_rotations():
    _, task = make_task(patch_fraction=1.0, jitter_fraction=0.0)
    x = torch.rand(6, 1, 12, 12, 12)
    cubes, order, rotations = task.scramble(x)
    assert cubes.shape == (6, 8, 1, 6, 6, 6) and order.shape == (6,) and rotations.shape == (6, 8)
    originals = grid_patches(x, 2)  # the 8 octants, row-major
    for b, i in itertools.product(range(6), range(8)):
        source = originals[b, task.perms[order[b], i]]
        k = int(rotations[b, i])
        expected = source if k == 0 else torch.rot90(source, 2, PLANES[k])
        assert torch.equal(cubes[b, i], expected)


def test_masking_only_fills_boxes_with_noise():
    cubes = torch.zeros(64, 1, 6, 6, 6)
    assert torch.equal(mask_cubes(cubes, p=0.0), cubes)
    masked = mask_cubes(cubes, p=1.0)
    changed = (masked != 0).flatten(1).float().mean(1)
    assert bool((changed > 0).all()) and bool((changed < 0.5).all())  # a box, not the whole cube


def test_forward_shapes_and_logs():
    encoder, task = make_task()
    assert len(task.perms) == 50 and task.min_hamming >= 5
    out = task(encoder, torch.rand(2, 1, 14, 14, 14))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (2, encoder.feature_dim)
    assert set(out.logs) == {"order_acc", "rotation_acc"}
    out.loss.backward()
    assert encoder.net.conv1.weight.grad is not None
    assert task.rotation_head[-1].weight.grad is not None and task.order_head[-1].weight.grad is not None
