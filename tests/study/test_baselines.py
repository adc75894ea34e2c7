"""Baseline arms (imagenet, medicalnet) beside scratch: fine-tuned from a local weights file, no pre-training."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
import torchvision

from medssl.errors import MedsslError
from medssl.study.runner import plan, run_study
from medssl.study.spec import parse_spec
from tests.study.conftest import tiny_raw


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _raw(imagenet_file, **overrides):
    return tiny_raw(methods=["scratch", "imagenet", "rotation"], backbones=["resnet18"], label_fractions=[1.0],
                    seeds=1, inits={"imagenet": str(imagenet_file)}, **overrides)


def test_imagenet_arm_runs_like_scratch_from_its_weights_file(imagenet_file, tmp_path):
    spec = parse_spec(_raw(imagenet_file))
    cells = plan(spec, tmp_path / "runs")
    assert [c.labels["method"] for c in cells if c.kind == "pretrain"] == ["rotation"]
    [baseline] = [c for c in cells if c.labels["method"] == "imagenet"]
    assert baseline.depends_on is None and baseline.labels["upstream"] == "-"
    outcome = run_study(spec, tmp_path / "results.db", tmp_path / "runs")
    assert not outcome.failures, outcome.failures
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = dict(db.execute("SELECT method, config FROM results WHERE kind = 'finetune'").fetchall())
    assert set(rows) == {"scratch", "imagenet", "rotation"}
    assert json.loads(rows["imagenet"])["checkpoint"] == f"imagenet:{imagenet_file}"
    assert json.loads(rows["scratch"])["checkpoint"] == "scratch"
    # the same fine-tuning protocol: every setting but the starting point is shared
    scratch, imagenet = json.loads(rows["scratch"]), json.loads(rows["imagenet"])
    differ = {k for k in scratch if scratch[k] != imagenet[k]}
    assert differ == {"checkpoint", "out"}


@pytest.mark.parametrize(("overrides", "match"), [
    ({"inits": {}}, "method 'imagenet' needs its weights file under 'inits'"),
    ({"inits": {"imagenet": "/nonexistent.pth"}}, "imagenet weights file not found"),
    ({"backbones": ["resnet10x0.25"]}, "the imagenet weights are a resnet18 x1"),
    ({"inits": {"imagenet": "x", "dino": "x"}}, "baselines are imagenet, medicalnet"),
])
def test_bad_baseline_specs_are_one_line_errors(imagenet_file, overrides, match):
    with pytest.raises(MedsslError) as err:
        parse_spec({**_raw(imagenet_file), **overrides})
    assert match in str(err.value) and "\n" not in str(err.value)
