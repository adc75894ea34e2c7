"""Models to evaluate: an encoder from a pre-training run, a fine-tuning run or random initialisation, and
the full classifier (encoder + linear head) of a fine-tuning run."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from medssl.data.dataset import ImageData
from medssl.errors import MedsslError
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.models.init import init_scheme, load_init
from medssl.models.package import check_transfer, is_package, load_package_encoder
from medssl.runio import is_complete, load_state, run_backbone_spec

RANDOM = "random"


class FrozenClassifier(nn.Module):
    """A fine-tuned classifier for inference: ``forward`` gives logits (B, num_classes)."""

    def __init__(self, encoder: Encoder, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def run_kind(checkpoint: str | Path) -> str:
    """'pretrain' or 'finetune' for a finished run dir, 'package' for a model package; a user error for
    anything else."""
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise MedsslError(f"checkpoint directory not found: {run_dir}")
    if is_package(run_dir):
        return "package"
    if not is_complete(run_dir):
        raise MedsslError(f"{run_dir} is not a finished run (no metrics.json)")
    if (run_dir / "classifier.pt").is_file():
        return "finetune"
    if (run_dir / "encoder.pt").is_file():
        return "pretrain"
    raise MedsslError(f"{run_dir} holds neither encoder.pt (pre-training) nor classifier.pt (fine-tuning)")


def _classifier_parts(run_dir: Path, data: ImageData) -> tuple[Encoder, dict[str, Tensor]]:
    encoder = Encoder(run_backbone_spec(run_dir, data.spatial_dims, data.channels))
    state = load_state(run_dir / "classifier.pt")
    encoder_state = {k.removeprefix("encoder.net."): v for k, v in state.items() if k.startswith("encoder.net.")}
    encoder.load_exported(encoder_state)
    return encoder, state


def load_encoder(checkpoint: str | Path, data: ImageData, *, backbone: str = "resnet18", width: float = 1.0,
                 seed: int = 0) -> Encoder:
    """The encoder to evaluate, in eval mode: ``random`` (a seeded random-init ``backbone``, the baseline),
    a pre-training run dir (its encoder.pt), a model package or a fine-tuning run dir (the encoder part of
    classifier.pt)."""
    if str(checkpoint) == RANDOM:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's random state
            torch.manual_seed(seed)
            encoder = Encoder(BackboneSpec(backbone, data.spatial_dims, data.channels, width))
    elif init_scheme(checkpoint):
        encoder = load_init(str(checkpoint), data.spatial_dims, data.channels)
        if init_scheme(checkpoint) == "package":
            check_transfer(Path(str(checkpoint).partition(":")[2]), data.conventions)
    elif run_kind(checkpoint) == "package":
        encoder = load_package_encoder(checkpoint, data.spatial_dims, data.channels)
        check_transfer(Path(checkpoint), data.conventions)
    elif run_kind(checkpoint) == "pretrain":
        run_dir = Path(checkpoint)
        encoder = Encoder(run_backbone_spec(run_dir, data.spatial_dims, data.channels))
        check_transfer(run_dir, data.conventions)
        encoder.load_exported(load_state(run_dir / "encoder.pt"))
    else:
        encoder, _ = _classifier_parts(Path(checkpoint), data)
    return encoder.eval()


def load_classifier(checkpoint: str | Path, data: ImageData) -> FrozenClassifier:
    """The fine-tuned classifier of a fine-tuning run dir, in eval mode."""
    if str(checkpoint) == RANDOM or run_kind(checkpoint) != "finetune":
        raise MedsslError(f"{checkpoint} is not a fine-tuning run (no classifier.pt); "
                          "--protocol finetune evaluates the output of `medssl finetune`")
    encoder, state = _classifier_parts(Path(checkpoint), data)
    if "head.weight" not in state or "head.bias" not in state:
        raise MedsslError(f"{checkpoint}/classifier.pt has no linear head (head.weight, head.bias)")
    num_classes, feature_dim = state["head.weight"].shape
    if feature_dim != encoder.feature_dim or num_classes != data.num_classes:
        raise MedsslError(f"{checkpoint}/classifier.pt head is {num_classes} classes x {feature_dim} features; "
                          f"expected {data.num_classes} x {encoder.feature_dim}")
    head = nn.Linear(feature_dim, num_classes)
    head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    return FrozenClassifier(encoder, head).eval()
