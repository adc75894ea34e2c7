"""SparK (Tian et al., ICLR 2023, "Designing BERT for convolutional networks"), 2D and 3D.

Random cells of the encoder's coarsest grid are masked per sample; the encoder runs *sparsely* on the
visible cells only (``medssl.models.sparse``: masked positions re-zeroed after every conv / pool /
norm, batch-norm statistics over visible positions). Learnable per-level mask tokens fill the masked
positions of the feature pyramid, a ``PyramidDecoder`` (saved for segmentation transfer) reconstructs
the image, and the loss is the MSE on masked patches against per-patch normalised pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medssl.errors import MedsslError
from medssl.methods.base import PretextTask, TaskOutput
from medssl.methods.registry import register
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import Encoder
from medssl.models.sparse import SparseEncoder, random_visible_mask, upsample_mask


def patch_errors(prediction: Tensor, target: Tensor, visible: Tensor, eps: float = 1e-6) -> Tensor:
    """The MSE (B, cells) of each patch between ``prediction`` and the per-patch normalised ``target``.

    A patch is the input region under one cell of ``visible`` (B, 1, *coarse); each patch of the
    target (all channels together) is standardised by its own mean and variance, as in SparK and MAE.
    """
    batch, channels = target.shape[:2]
    cells = visible[0].numel()
    grid = torch.arange(cells, device=target.device).reshape(1, 1, *visible.shape[2:])
    ids = upsample_mask(grid, target.shape[2:]).flatten(1).expand(batch, channels, -1).reshape(batch, -1)

    def per_patch(values: Tensor) -> Tensor:
        return values.new_zeros(batch, cells).scatter_add_(1, ids, values)

    t, p = target.flatten(1).float(), prediction.flatten(1).float()
    count = per_patch(torch.ones_like(t))
    mean = (per_patch(t) / count).gather(1, ids)
    var = (per_patch((t - mean) ** 2) / count).gather(1, ids)
    normalised = (t - mean) / (var + eps).sqrt()
    return per_patch((p - normalised) ** 2) / count


def masked_patch_loss(prediction: Tensor, target: Tensor, visible: Tensor) -> Tensor:
    """Mean over masked patches of ``patch_errors``."""
    return patch_errors(prediction, target, visible)[~visible.flatten(1)].mean()


@register
class SparK(PretextTask):
    name = "spark"
    family = "generative"

    def __init__(self, encoder: Encoder, mask_ratio: float = 0.6, decoder_width: float = 0.5) -> None:
        super().__init__(encoder)
        if not 0.0 < mask_ratio < 1.0:
            raise MedsslError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
        self.mask_ratio = mask_ratio
        # Not a submodule: the view shares (and so trains) the encoder's own weights.
        self.sparse: SparseEncoder | None = SparseEncoder(encoder)
        # 1-D so that the optimizer's no-weight-decay rule (ndim <= 1) applies, as in SparK
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(nn.init.trunc_normal_(torch.empty(c), std=0.02)) for c in encoder.pyramid_channels
        )
        self.decoder = PyramidDecoder(encoder.pyramid_channels, encoder.spatial_dims,
                                      out_channels=encoder.spec.in_channels, width=decoder_width)

    def _sparse_encoder(self, encoder: Encoder) -> SparseEncoder:
        if self.sparse is None or not self.sparse.views(encoder):  # a copied task, another or a modified encoder
            self.sparse = SparseEncoder(encoder)
        return self.sparse

    def __getstate__(self) -> dict:
        # The view references the encoder's modules: copies and pickles of the task rebuild it on first use.
        return {**self.__dict__, "sparse": None}

    def densify(self, pyramid: list[Tensor], visible: Tensor) -> list[Tensor]:
        """Fill each level's masked positions with that level's mask token."""
        dense = []
        for features, token in zip(pyramid, self.mask_tokens, strict=True):
            shown = upsample_mask(visible, features.shape[2:])
            dense.append(torch.where(shown, features, token.view(1, -1, *([1] * (features.ndim - 2)))))
        return dense

    def reconstruct(self, encoder: Encoder, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Mask, encode sparsely and decode: (prediction, visible (B, 1, *coarse) bool, sparse pyramid)."""
        sparse = self._sparse_encoder(encoder)
        visible = random_visible_mask(len(x), sparse.coarse_size(x.shape[2:]), self.mask_ratio, x.device)
        pyramid = sparse.pyramid(x, visible)
        prediction = self.decoder(self.densify(pyramid, visible), output_size=x.shape[2:])
        return prediction, visible, pyramid

    def forward(self, encoder: Encoder, x: Tensor) -> TaskOutput:
        prediction, visible, pyramid = self.reconstruct(encoder, x)
        loss = masked_patch_loss(prediction, x, visible)
        # Probe features: mean of the coarsest sparse features over visible cells (no extra dense pass).
        features = pyramid[-1].detach().flatten(2).sum(-1) / visible.flatten(2).sum(-1)
        return TaskOutput(loss, features)
