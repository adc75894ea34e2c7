"""Baseline initialisations from other people's weight files, and the one resolver of ``--checkpoint``/``--init``
sources that name weights rather than a run: ``imagenet:PATH``, ``medicalnet:PATH``, ``package:DIR``.

- ``imagenet:PATH``: a torchvision ResNet-18/34/50 ``state_dict`` (``torch.save(model.state_dict())``); 2D. The
  first convolution is adapted to the data's channels by summing over RGB (a grey image fed as three equal
  channels gives exactly this filter's response); torchvision keys map one-to-one onto MONAI's ResNet.
- ``medicalnet:PATH``: a MedicalNet 3D ResNet-10/18/34/50 checkpoint (``{"state_dict": {"module.conv1...": ...}}``);
  its shortcut type and downsample bias come from MONAI's ``get_medicalnet_pretrained_resnet_args``.
- ``package:DIR``: a medssl model package (``medssl export``).

Every tensor of the encoder must be filled and every weight of the file used (classifier/segmentation heads
aside), with the same shape; anything else is a one-line error. Nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args
from torch import Tensor

from medssl.errors import MedsslError
from medssl.models.encoder import ARCHITECTURES, BackboneSpec, Encoder
from medssl.models.package import load_package_encoder
from medssl.runio import load_state

SCHEMES = ("imagenet", "medicalnet", "package")
# weights of heads the encoder does not have: torchvision's classifier, MedicalNet's segmentation head
HEAD_PREFIXES = ("fc.", "conv_seg.")


def init_scheme(source: str | Path) -> str | None:
    """``imagenet`` for ``imagenet:PATH`` etc.; None for anything else (a run dir, ``scratch``)."""
    scheme, sep, _ = str(source).partition(":")
    return scheme if sep and scheme in SCHEMES else None


def load_init(source: str, spatial_dims: int, channels: int) -> Encoder:
    """The encoder named by ``SCHEME:PATH`` (see the module doc), checked against the data it will see."""
    scheme, _, path = source.partition(":")
    if scheme == "package":
        if not Path(path).is_dir():
            raise MedsslError(f"model package directory not found: {path}")
        return load_package_encoder(path, spatial_dims, channels)
    state = load_state(Path(path), scheme, unwrap=True)
    if scheme == "imagenet":
        if spatial_dims != 2:
            raise MedsslError(f"ImageNet weights are 2D but the data is {spatial_dims}D (medicalnet: is 3D)")
        return _encoder(imagenet_state(state, channels), spatial_dims, channels, path, shortcut="B", bias=False)
    if spatial_dims != 3:
        raise MedsslError(f"MedicalNet weights are 3D but the data is {spatial_dims}D (imagenet: is 2D)")
    state = medicalnet_state(state, channels)
    name = architecture(state, path)
    bias, shortcut = get_medicalnet_pretrained_resnet_args(int(name.removeprefix("resnet")))
    return _encoder(state, spatial_dims, channels, path, shortcut=shortcut, bias=bias)


def init_backbone(source: str) -> tuple[str, float]:
    """(architecture, width) of the weights ``imagenet:PATH`` / ``medicalnet:PATH`` name, without building them."""
    scheme, _, path = source.partition(":")
    state = load_state(Path(path), scheme, unwrap=True)
    state = medicalnet_state(state, 1) if scheme == "medicalnet" else imagenet_state(state, 1)
    return architecture(state, path), state["conv1.weight"].shape[0] / 64


def adapt_first_conv(weight: Tensor, channels: int) -> Tensor:
    """RGB (or any) input filters -> ``channels`` inputs: their sum, shared equally among the new channels, so
    an image repeated over the channels gives the response the original filter gives that image in grey."""
    if weight.shape[1] == channels:
        return weight
    return weight.sum(1, keepdim=True).repeat(1, channels, *([1] * (weight.ndim - 2))) / channels


def imagenet_state(state: dict[str, Tensor], channels: int) -> dict[str, Tensor]:
    """A torchvision ResNet state_dict as a MONAI ResNet's (same key names; the classifier dropped)."""
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    if "conv1.weight" not in state:
        raise MedsslError("not a torchvision ResNet state_dict (no conv1.weight)")
    state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], channels)
    return state


def medicalnet_state(state: dict[str, Tensor], channels: int) -> dict[str, Tensor]:
    """A MedicalNet checkpoint's weights with DataParallel's ``module.`` prefix removed (as MONAI's own MedicalNet
    loader does) and its segmentation head dropped."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    if "conv1.weight" not in state:
        raise MedsslError("not a MedicalNet ResNet checkpoint (no conv1.weight after removing 'module.')")
    state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], channels)
    return state


def architecture(state: dict[str, Tensor], where: str) -> str:
    """The ResNet (resnet10/18/34/50) whose blocks per stage and block type the weights have."""
    blocks = [len({m.group(1) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5)]
    block = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    for name, (kind, layers) in ARCHITECTURES.items():
        if kind == block and layers == blocks:
            return name
    raise MedsslError(f"{where}: a ResNet with {block} blocks {blocks} per stage is not one of "
                      f"{', '.join(ARCHITECTURES)}")


def _encoder(state: dict[str, Tensor], spatial_dims: int, channels: int, where: str, *, shortcut: str,
             bias: bool) -> Encoder:
    width = state["conv1.weight"].shape[0] / 64
    spec = BackboneSpec(architecture(state, where), spatial_dims, channels, width, small_stem=False,
                        shortcut_type=shortcut, bias_downsample=bias)
    encoder = Encoder(spec)
    own = encoder.net.state_dict()
    if state["conv1.weight"].shape[2:] != own["conv1.weight"].shape[2:]:
        raise MedsslError(f"{where}: first convolution {tuple(state['conv1.weight'].shape[2:])} is not the "
                          f"{spatial_dims}D 7-wide stem of a {spec.name}")
    missing = sorted(set(own) - set(state))
    unused = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unused or wrong:
        first = (wrong or missing or unused)[0]
        raise MedsslError(f"{where}: the weights do not fit a MONAI {spec.name} ({len(missing)} missing, "
                          f"{len(unused)} unused, {len(wrong)} of another shape; first: {first})")
    encoder.load_exported(state)
    return encoder
