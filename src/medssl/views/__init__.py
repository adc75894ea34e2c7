"""Batched, on-device, dimension-agnostic augmentations ("views") for (B, C, *spatial) tensors in [0, 1]."""

from medssl.views.corruption import (
    box_mask,
    genesis_corrupt,
    inpaint,
    local_pixel_shuffle,
    nonlinear_intensity,
    outpaint,
)
from medssl.views.intensity import gaussian_blur, gaussian_noise, random_contrast, random_gamma
from medssl.views.pipeline import ViewPipeline, contrastive_view, light_view
from medssl.views.spatial import random_resized_crop, rotate_by_class, rotation_classes

__all__ = [
    "ViewPipeline",
    "box_mask",
    "contrastive_view",
    "gaussian_blur",
    "gaussian_noise",
    "genesis_corrupt",
    "inpaint",
    "light_view",
    "local_pixel_shuffle",
    "nonlinear_intensity",
    "outpaint",
    "random_contrast",
    "random_gamma",
    "random_resized_crop",
    "rotate_by_class",
    "rotation_classes",
]
