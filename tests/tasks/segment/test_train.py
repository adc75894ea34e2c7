"""Patch sampling, paired flips, and sliding-window evaluation at the original resolution."""

import numpy as np
import pytest
import torch
from torch import nn

from medssl.data.masks import SegSplit
from medssl.tasks.segment.train import (
    PatchSampler,
    evaluate,
    random_flips,
    segmentation_augmentation,
    select_threshold,
    soft_dice_loss,
)


def split_with_small_foreground(dims: int, n: int = 3, size: int = 24) -> SegSplit:
    images = np.random.default_rng(0).integers(0, 255, (n, 1, *(size,) * dims)).astype(np.uint8)
    masks = np.zeros_like(images)
    masks[(slice(None), 0, *(slice(10, 13),) * dims)] = 255
    return SegSplit(images, masks, [f"x{i}" for i in range(n)])


@pytest.mark.parametrize("dims", [2, 3])
def test_positive_patches_are_centred_on_foreground(dims):
    sampler = PatchSampler(split_with_small_foreground(dims), patch=8, batch_size=16, steps=1, pos_fraction=1.0)
    images, masks = sampler.batch()
    assert images.shape == (16, 1, *(8,) * dims) and masks.dtype == torch.uint8
    assert (masks[(slice(None), 0, *(4,) * dims)] == 255).all()


def test_negative_patches_stay_inside_the_field_of_view():
    split = split_with_small_foreground(2)
    fov = np.zeros(split.masks.shape, bool)
    fov[:, :, :, :6] = True  # a strip on the left: every negative centre lies in it
    sampler = PatchSampler(SegSplit(split.images, np.zeros_like(split.masks), split.names, fov), patch=8,
                           batch_size=32, steps=1, pos_fraction=0.0)
    starts = [sampler._centre(0)[1] for _ in range(50)]
    assert max(starts) < 6


def test_flips_move_image_and_mask_together():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 6, 7, 5)
    y = (x > 0.5).float()
    fx, fy = random_flips(x, y)
    assert torch.equal(fy, (fx > 0.5).float())
    assert not torch.equal(fx, x)  # some samples were flipped


@pytest.mark.parametrize("name", ["flips", "rot90", "rotate", "scale"])
def test_every_ladder_rung_transforms_image_and_mask_with_one_geometry(name):
    torch.manual_seed(0)
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 2:7, 3:12] = 1.0  # an asymmetric bar: every flip and quarter turn moves it
    fx, fy = segmentation_augmentation(name)(x, x.clone())
    assert torch.allclose(fx, fy)  # the mask went wherever the image went
    assert not torch.allclose(fx, x)


def test_no_augmentation_is_none():
    assert segmentation_augmentation("none") is None


def test_soft_dice_loss_is_zero_for_a_confident_perfect_prediction():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:5, 2:5] = 1
    assert soft_dice_loss((target * 2 - 1) * 50, target).item() == pytest.approx(0.0, abs=1e-4)
    assert soft_dice_loss(-(target * 2 - 1) * 50, target).item() > 0.9


class Threshold(nn.Module):
    """Logit = 100 * (intensity - 0.5): predicts foreground where the image is bright."""

    def __init__(self, scale: float = 100.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x - 0.5)


def test_evaluation_interpolates_back_to_the_original_resolution():
    images = np.zeros((1, 1, 8, 8), np.uint8)
    images[0, 0, :4] = 255  # bright top half
    native = np.zeros((1, 16, 16), bool)
    native[0, :8] = True  # the same top half at twice the resolution
    native_fov = np.ones((1, 16, 16), bool)
    split = SegSplit(images, images.copy(), ["a"], None, [native], [native_fov])
    summary, per_image, predictions = evaluate(Threshold(), split, patch=4)
    assert predictions[0].shape == (1, 16, 16)
    assert summary["dice"] == pytest.approx(1.0) and per_image[0]["iou"] == pytest.approx(1.0)
    summary, _, predictions = evaluate(Threshold(), split, patch=4, native=False)
    assert predictions[0].shape == (1, 8, 8) and summary["dice"] == pytest.approx(1.0)


def test_threshold_is_chosen_on_the_given_images():
    intensity = np.linspace(0, 1, 11)  # logits 10 * (x - 0.5): x = 0.6 -> p 0.73, x = 0.7 -> p 0.88
    images = np.tile((intensity * 255).round().astype(np.uint8), (1, 1, 11, 1))
    truth = np.tile(intensity >= 0.7, (1, 11, 1))
    split = SegSplit(images, (truth * 255).astype(np.uint8)[None], ["a"])
    threshold, dice = select_threshold(Threshold(10.0), split, patch=11)
    assert threshold == 0.75 and dice == pytest.approx(1.0)
