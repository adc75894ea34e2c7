"""Autoencoders: reconstruct the clean input from the encoder's feature pyramid.

``autoencoder`` sees the image as it is; ``denoising_autoencoder`` (Vincent et al. 2008) sees it with
additive Gaussian noise and a random fraction of pixels set to zero. Both decode with a U-Net-style
``PyramidDecoder`` (saved for segmentation transfer), a sigmoid, and an MSE to the clean input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.errors import MedsslError
from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import Encoder


def noise_and_drop(x: Tensor, noise_std: float, drop_fraction: float) -> Tensor:
    """``x`` plus N(0, noise_std²) noise, with each pixel (all channels) zeroed with probability
    ``drop_fraction``; clamped to [0, 1]."""
    noisy = x + noise_std * torch.randn_like(x)
    dropped = torch.rand((x.shape[0], 1, *x.shape[2:]), device=x.device) < drop_fraction
    return noisy.masked_fill(dropped, 0.0).clamp(0.0, 1.0)


@register
class Autoencoder(PretextTask):
    name = "autoencoder"
    family = "generative"

    def __init__(self, encoder: Encoder, decoder_width: float = 0.5) -> None:
        super().__init__(encoder)
        self.decoder = PyramidDecoder(encoder.pyramid_channels, encoder.spatial_dims,
                                      out_channels=encoder.spec.in_channels, width=decoder_width)

    def corrupt(self, x: Tensor) -> Tensor:
        return x

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        pyramid = encoder.pyramid(self.corrupt(x))
        restored = torch.sigmoid(self.decoder(pyramid, output_size=x.shape[2:]))
        return TaskOutput(F.mse_loss(restored, x), encoder.pool(pyramid[-1]))


@register
class DenoisingAutoencoder(Autoencoder):
    name = "denoising_autoencoder"

    def __init__(self, encoder: Encoder, decoder_width: float = 0.5, noise_std: float = 0.1,
                 drop_fraction: float = 0.25) -> None:
        super().__init__(encoder, decoder_width)
        if noise_std < 0 or not 0.0 <= drop_fraction < 1.0:
            raise MedsslError(f"need noise_std >= 0 and drop_fraction in [0, 1), got {noise_std}, {drop_fraction}")
        self.noise_std = noise_std
        self.drop_fraction = drop_fraction

    def corrupt(self, x: Tensor) -> Tensor:
        return noise_and_drop(x, self.noise_std, self.drop_fraction)
