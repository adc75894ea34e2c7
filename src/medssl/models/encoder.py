"""MONAI ResNet encoders for 2D and 3D that expose their feature pyramid.

The encoder *is* a MONAI ``ResNet`` without its classifier, so ``encoder.net.state_dict()`` loads into
``monai.networks.nets.ResNet(**spec.monai_kwargs())`` unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.nets import ResNet
from torch import Tensor, nn

from medssl.errors import MedsslError

# name -> (block, layers per stage)
ARCHITECTURES: dict[str, tuple[str, list[int]]] = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}
BASE_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild an encoder; saved in every run's config."""

    name: str = "resnet18"
    spatial_dims: int = 2
    in_channels: int = 1
    width: float = 1.0
    small_stem: bool = True  # 3x3 stride-1 stem and no max-pool: keeps resolution for 28-64 px inputs
    # residual shortcuts where shapes change: "B" a strided 1x1 conv (with a bias unless bias_downsample is
    # False: torchvision's and MedicalNet's ResNets have none), "A" zero padding (MedicalNet ResNet-18/34)
    shortcut_type: str = "B"
    bias_downsample: bool = True

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise MedsslError(f"unknown backbone '{self.name}'; choose from {', '.join(ARCHITECTURES)}")
        if self.spatial_dims not in (2, 3):
            raise MedsslError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if not 0.0625 <= self.width <= 4:
            raise MedsslError(f"backbone width factor must lie in [1/16, 4], got {self.width}")
        if self.in_channels < 1:
            raise MedsslError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.shortcut_type not in ("A", "B"):
            raise MedsslError(f"shortcut_type must be A or B, got '{self.shortcut_type}'")

    def monai_kwargs(self) -> dict:
        block, layers = ARCHITECTURES[self.name]
        return {
            "block": block,
            "layers": layers,
            "block_inplanes": [max(int(w * self.width), 4) for w in BASE_WIDTHS],
            "spatial_dims": self.spatial_dims,
            "n_input_channels": self.in_channels,
            "conv1_t_size": 3 if self.small_stem else 7,
            "conv1_t_stride": 1 if self.small_stem else 2,
            "no_max_pool": self.small_stem,
            "feed_forward": False,
            "shortcut_type": self.shortcut_type,
            "bias_downsample": self.bias_downsample,
        }

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """A MONAI ResNet returning either pooled features or the feature pyramid (stem, stage 1..4)."""

    channels_last = False

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net = ResNet(**spec.monai_kwargs())
        expansion = 4 if ARCHITECTURES[spec.name][0] == "bottleneck" else 1
        widths = spec.monai_kwargs()["block_inplanes"]
        self.pyramid_channels: list[int] = [widths[0]] + [w * expansion for w in widths]
        self.feature_dim = self.pyramid_channels[-1]

    @property
    def spatial_dims(self) -> int:
        return self.spec.spatial_dims

    def use_channels_last(self) -> Encoder:
        """Store weights and activations channels-last (faster convolutions on CPUs and tensor cores).
        Call before building pretext tasks, so that their copies of the encoder inherit it."""
        self.channels_last = True
        return self.to(memory_format=_channels_last_format(self.spatial_dims))

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """Features from finest to coarsest: stem, layer1, layer2, layer3, layer4."""
        net = self.net
        if self.channels_last:
            x = x.contiguous(memory_format=_channels_last_format(x.ndim - 2))
        x = net.act(net.bn1(net.conv1(x)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        features = [x]
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
            features.append(x)
        return features

    @staticmethod
    def pool(features: Tensor) -> Tensor:
        return features.flatten(2).mean(-1)

    def forward(self, x: Tensor) -> Tensor:
        """Global-average-pooled coarsest features, shaped (B, feature_dim)."""
        return self.pool(self.pyramid(x)[-1])

    def export_state(self) -> dict[str, Tensor]:
        """A plain state_dict for ``monai.networks.nets.ResNet(**spec.monai_kwargs())``."""
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def load_exported(self, state: dict[str, Tensor]) -> None:
        try:
            self.net.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise MedsslError(f"encoder weights do not fit backbone {self.spec.name}: {first}") from None



def _channels_last_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
