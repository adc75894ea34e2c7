"""Models Genesis (Zhou et al. 2019): restore the original image from a corrupted one.

An autoencoder whose input corruption is Models Genesis' (non-linear intensity, local pixel shuffling,
in-/out-painting, from ``medssl.views.corruption``); the decoder is saved so segmentation can reuse it.
"""

from __future__ import annotations

from torch import Tensor

from medssl.methods.generative.autoencoder import Autoencoder
from medssl.methods.registry import register
from medssl.views import genesis_corrupt


@register
class ModelsGenesis(Autoencoder):
    name = "genesis"

    def corrupt(self, x: Tensor) -> Tensor:
        return genesis_corrupt(x)
