"""Presets are valid specs; ``quick`` is exactly the historical quickstart recipe."""

from __future__ import annotations

import pytest
import yaml

from medssl.errors import MedsslError
from medssl.study.presets import PRESETS, QuickSettings, preset
from medssl.study.spec import parse_spec


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_study(name):
    spec = preset(name, datasets=["data.npz"])
    assert spec.datasets == ["data.npz"] and "scratch" in spec.methods


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_its_printed_yaml(name):
    spec = preset(name)
    again = parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again.hash == spec.hash and again.to_dict() == spec.to_dict()


def test_quick_preset_is_the_quickstart_recipe():
    s = QuickSettings()
    spec = preset("quick")
    assert spec.methods == ["scratch", s.method] and spec.label_fractions == list(s.fractions)
    assert spec.seeds == [0, 1, 2] and spec.pretrain["seed"] == 0  # one encoder shared by all seeds
    assert spec.pretrain["epochs"] == s.pretrain_epochs and spec.finetune["epochs"] == s.finetune_epochs


def test_paper_presets_cover_the_papers_grids():
    assert preset("label-fractions").label_fractions == [1.0, 0.5, 0.25, 0.1, 0.05, 0.01]
    assert preset("imbalance").imbalance_ratios == [1.0, 5.0, 10.0, 20.0, 50.0]
    ladder = preset("policies").policies
    assert ladder[:5] == ["none", "flips", "rot90", "rotate", "scale"] and "scale+balanced" in ladder


def test_unknown_preset():
    with pytest.raises(MedsslError, match="unknown preset 'nope'"):
        preset("nope")


@pytest.mark.parametrize("name", ["label-fractions", "imbalance", "full"])
def test_paper_presets_pretrain_one_encoder_per_seed(name, tmp_path):
    from medssl.study.runner import plan

    spec = preset(name, datasets=["data.npz"], seeds=2)
    assert spec.pretrain["seed"] == "same"
    cells = plan(spec, tmp_path)
    pretrains = [c for c in cells if c.kind == "pretrain"]
    encoders = {(c.labels["method"], c.labels["backbone"]) for c in pretrains}
    assert len(pretrains) == 2 * len(encoders)  # each (method, backbone) once per seed
    for cell in cells:
        if cell.kind == "finetune" and cell.depends_on is not None:
            assert next(p for p in pretrains if p.key == cell.depends_on).labels["seed"] == cell.labels["seed"]
