from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medssl.data.sources import load_data
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.runio import save_state, write_json, write_yaml
from medssl.tasks.classify.module import Classifier

TINY = {"name": "resnet10", "width": 0.125}


def fake_pretrain_run(run_dir: Path, spatial_dims: int, seed: int = 1) -> Path:
    """A finished pre-training run dir as ``api.pretrain`` leaves it (untrained weights: fast)."""
    torch.manual_seed(seed)
    spec = BackboneSpec(TINY["name"], spatial_dims, 1, TINY["width"])
    save_state(run_dir / "encoder.pt", Encoder(spec).export_state())
    write_yaml(run_dir / "config.yaml", {"kind": "pretrain", "backbone_spec": spec.to_dict()})
    write_json(run_dir / "metrics.json", {})
    return run_dir


def fake_finetune_run(run_dir: Path, spatial_dims: int, num_classes: int = 2, seed: int = 2) -> Path:
    """A finished fine-tuning run dir: classifier.pt is a real ``Classifier`` state_dict."""
    torch.manual_seed(seed)
    spec = BackboneSpec(TINY["name"], spatial_dims, 1, TINY["width"])
    model = Classifier(Encoder(spec), num_classes)
    save_state(run_dir / "classifier.pt", {k: v.detach().clone() for k, v in model.state_dict().items()})
    write_yaml(run_dir / "config.yaml", {"kind": "finetune", "backbone_spec": spec.to_dict()})
    write_json(run_dir / "metrics.json", {})
    return run_dir


@pytest.fixture(scope="session")
def data2d():
    return load_data("synthetic:lesions2d@16?n=80")


@pytest.fixture(scope="session")
def data3d():
    return load_data("synthetic:lesions3d@16?n=40")
