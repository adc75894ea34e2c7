"""A run without a learning rate takes its method's own (DINO: the paper's 5e-4 x batch / 256) or the general
default, and records the rate it used; an explicit rate always wins."""

from __future__ import annotations

import pytest

from medssl.api import pretrain
from medssl.config import FinetuneConfig, PretrainConfig
from medssl.errors import MedsslError
from medssl.methods.base import DEFAULT_PRETRAIN_LR, pretraining_lr
from medssl.methods.registry import parse_method
from medssl.runio import read_yaml
from tests.test_api import toy_data

TINY = {"backbone": "resnet10", "width": 0.125, "batch_size": 16, "accelerator": "cpu", "epochs": 1,
        "max_steps": 1}
DINO_ARGS = {"output_dim": "64", "hidden_dim": "32", "bottleneck_dim": "16", "n_local_crops": "2"}


def methods(spec: str) -> list:
    return [cls for cls, _ in parse_method(spec, None)]


def test_dino_recommends_the_papers_scaled_rate_and_a_combination_takes_the_smallest():
    assert pretraining_lr(methods("dino"), 256) == pytest.approx(5e-4)
    assert pretraining_lr(methods("dino"), 32) == pytest.approx(6.25e-5)
    assert pretraining_lr(methods("simclr"), 32) == DEFAULT_PRETRAIN_LR
    assert pretraining_lr(methods("rotation+dino"), 32) == pytest.approx(6.25e-5)


@pytest.mark.parametrize(("method", "args", "lr", "expected"), [
    ("dino", DINO_ARGS, None, 5e-4 * 16 / 256),
    ("simclr", {}, None, DEFAULT_PRETRAIN_LR),
    ("dino", DINO_ARGS, 3e-4, 3e-4),
])
def test_the_rate_a_run_used_is_recorded_in_its_config(tmp_path, method, args, lr, expected):
    result = pretrain(PretrainConfig(data="toy", out=str(tmp_path / "run"), method=method, method_args=args, lr=lr,
                                     **TINY), data=toy_data(2), progress=False)
    assert read_yaml(result.run_dir / "config.yaml")["lr"] == pytest.approx(expected)


def test_only_pretraining_leaves_the_rate_to_the_method():
    with pytest.raises(MedsslError, match="learning rate"):
        FinetuneConfig(data="d", out="o", checkpoint="scratch", lr=None).validate()
    with pytest.raises(MedsslError, match="learning rate must be > 0"):
        PretrainConfig(data="d", out="o", lr=0.0).validate()
