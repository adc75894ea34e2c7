"""A light U-Net-style decoder over an encoder's feature pyramid, for 2D and 3D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers import Conv
from torch import Tensor, nn


class PyramidDecoder(nn.Module):
    """Upsamples from the coarsest feature map, merging each finer level through a skip connection.

    Generative pre-training trains it; segmentation can then reuse it (encoder + decoder transfer).
    """

    def __init__(self, pyramid_channels: list[int], spatial_dims: int, out_channels: int = 1,
                 width: float = 0.5) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        channels = [max(int(c * width), 8) for c in pyramid_channels]
        self.lateral = nn.ModuleList(
            Conv[Conv.CONV, spatial_dims](c_in, c, kernel_size=1)
            for c_in, c in zip(pyramid_channels, channels, strict=True)
        )
        self.blocks = nn.ModuleList(
            Convolution(spatial_dims, coarse + fine, fine, kernel_size=3, norm="batch", act="relu")
            for coarse, fine in zip(channels[1:], channels[:-1], strict=False)
        )
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)

    def forward(self, pyramid: list[Tensor], output_size: tuple[int, ...] | None = None) -> Tensor:
        """Returns logits at the finest pyramid resolution (or ``output_size``)."""
        x = self.lateral[-1](pyramid[-1])
        for level in range(len(pyramid) - 2, -1, -1):
            skip = self.lateral[level](pyramid[level])
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = self.blocks[level](torch.cat([x, skip], dim=1))
        x = self.head(x)
        if output_size is not None and tuple(x.shape[2:]) != tuple(output_size):
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            x = F.interpolate(x, size=output_size, mode=mode, align_corners=False)
        return x
