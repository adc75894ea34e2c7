"""Models Genesis (Zhou et al. 2019): restore the original image from a corrupted one.

Corruptions (non-linear intensity, local pixel shuffling, in-/out-painting) come from
``medssl.views.corruption``; the decoder is a U-Net-style ``PyramidDecoder`` that segmentation can reuse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import Encoder
from medssl.views import genesis_corrupt


@register
class ModelsGenesis(PretextTask):
    name = "genesis"
    family = "generative"

    def __init__(self, encoder: Encoder, decoder_width: float = 0.5) -> None:
        super().__init__(encoder)
        self.decoder = PyramidDecoder(encoder.pyramid_channels, encoder.spatial_dims,
                                      out_channels=encoder.spec.in_channels, width=decoder_width)

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        pyramid = encoder.pyramid(genesis_corrupt(x))
        restored = torch.sigmoid(self.decoder(pyramid, output_size=x.shape[2:]))
        return TaskOutput(F.mse_loss(restored, x), encoder.pool(pyramid[-1]))
