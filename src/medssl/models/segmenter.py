"""A U-Net-style segmenter: any medssl encoder (2D or 3D) + the ``PyramidDecoder`` with a 1x1 output conv.

Transfer from a pre-training run: ``encoder`` (encoder.pt), ``decoder`` (decoder.pt, saved by generative
methods; the reconstruction output conv is not transferred, it predicts intensities, not masks), ``both``,
or ``none``. Whatever is transferred comes from the run; the rest is freshly initialised.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from medssl.errors import MedsslError
from medssl.models.decoder import PyramidDecoder
from medssl.models.encoder import Encoder
from medssl.runio import load_state

TRANSFERS = ("none", "encoder", "decoder", "both")
DECODER_WIDTH = 0.5  # as the generative pretext tasks build theirs, so decoder.pt fits


class Segmenter(nn.Module):
    def __init__(self, encoder: Encoder, out_channels: int = 1, decoder_width: float = DECODER_WIDTH) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = PyramidDecoder(encoder.pyramid_channels, encoder.spatial_dims, out_channels=out_channels,
                                      width=decoder_width)

    @property
    def spatial_dims(self) -> int:
        return self.encoder.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, out_channels, *spatial) at the input's resolution."""
        return self.decoder(self.encoder.pyramid(x), output_size=tuple(x.shape[2:]))

    def load_pretrained_decoder(self, run_dir: str | Path) -> list[str]:
        """Load decoder.pt of a generative pre-training run (all but its output conv); returns loaded keys."""
        path = Path(run_dir) / "decoder.pt"
        if not path.is_file():
            raise MedsslError(f"{run_dir} has no decoder.pt: transfer 'decoder'/'both' needs a run of a generative"
                              " method (autoencoder, genesis, spark, ...); use --transfer encoder")
        state = {k: v for k, v in load_state(path).items() if not k.startswith("head.")}
        own = self.decoder.state_dict()
        missing = sorted(k for k in own if not k.startswith("head.") and k not in state)
        wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if missing or wrong:
            first = (wrong or missing)[0]
            shown = f"{tuple(state[first].shape)} vs {tuple(own[first].shape)}" if first in state and first in own \
                else "missing"
            raise MedsslError(f"{path} does not fit this decoder ({len(missing)} missing, {len(wrong)} mismatched"
                              f" tensors; first {first}: {shown})")
        self.decoder.load_state_dict(state, strict=False)
        return sorted(state)
