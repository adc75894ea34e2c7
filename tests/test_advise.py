"""``medssl advise``: the profile is the loader's, the priors are tagged, the spec runs and has the seeds its power
statement claims."""

from __future__ import annotations

import math

import pytest

from medssl.advise import SEED_SD, WOLF, ZHANG, advise, render, spec_yaml
from medssl.cli import main
from medssl.data.sources import load_data
from medssl.study.inference import ALPHA, POWER, detectable_difference
from medssl.study.spec import load_spec

SYNTHETIC = "synthetic:lesions2d@16?n=400&ratio=4"


def _check_power(advice) -> None:
    """The spec's seeds are the fewest that reach the stated power, or the cap when none do."""
    seeds = len(advice.spec.seeds)
    alpha = ALPHA / advice.comparisons
    test = advice.profile.test
    at = detectable_difference(SEED_SD**2 / seeds, seeds, advice.var_images, test, alpha, POWER)
    assert advice.detectable == pytest.approx(at)
    if "the cap" in advice.power_note:
        assert advice.detectable > 0.05
    else:
        assert at <= 0.05 < detectable_difference(SEED_SD**2 / (seeds - 1), seeds - 1, advice.var_images, test,
                                                  alpha, POWER)


def test_advice_on_synthetic_data_profiles_it_tags_priors_and_writes_a_runnable_spec(tmp_path):
    data = load_data(SYNTHETIC)
    advice = advise(data, labels=20, data_spec=SYNTHETIC)
    p = advice.profile
    assert p.labelled == len(data.splits["train"]) and p.test == len(data.splits["test"])
    assert p.class_counts == data.class_counts("train") and p.imbalance == pytest.approx(
        max(p.class_counts) / min(p.class_counts))
    assert p.modality.startswith("unknown") and p.spatial_dims == 2 and p.shape == (16, 16)
    assert {pred.source for pred in advice.predictions} >= {ZHANG, WOLF}
    text = render(advice)
    assert all(f"[prior: {pred.source}]" in text for pred in advice.predictions) and "not results" in text
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec_yaml(advice))
    spec = load_spec(spec_path)
    assert spec.datasets == [SYNTHETIC] and spec.methods == ["scratch", "simclr", "spark"]
    assert spec.label_fractions == pytest.approx(sorted({20 / p.labelled, 1.0}))
    assert spec.imbalance_ratios == [None, 1.0] and spec.policies == ["default", "scale+balanced"]  # 1:4 data
    assert advice.comparisons == 2 * 2 * 2 * 2
    _check_power(advice)


def test_a_large_test_set_gets_the_fewest_seeds_that_reach_the_power():
    data = load_data("synthetic:lesions2d@16?n=6000&ratio=1")  # balanced: one ratio, one policy
    advice = advise(data, max_seeds=40)
    assert advice.spec.imbalance_ratios == [None] and advice.spec.policies == ["default"]
    assert "the cap" not in advice.power_note and 2 <= len(advice.spec.seeds) < 40
    assert any("balanced data" in pred.statement for pred in advice.predictions)
    _check_power(advice)


@pytest.mark.real_data
def test_advice_on_breastmnist(breastmnist, tmp_path, capsys):
    out = tmp_path / "breast.yaml"
    assert main(["advise", "--data", str(breastmnist), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "modality breast ultrasound" in printed and "imbalance 1:2.7" in printed
    assert "156 test" in printed and f"[prior: {ZHANG}]" in printed and f"[prior: {WOLF}]" in printed
    spec = load_spec(out)
    assert spec.datasets == [str(breastmnist)] and 1.0 in spec.imbalance_ratios
    assert str(len(spec.seeds)) + " seeds" in printed


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["advise", "--data", SYNTHETIC, "--labels", "100000", "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--labels must lie in" in err
    assert not (tmp_path / "x.yaml").exists()
    assert math.isfinite(advise(load_data(SYNTHETIC)).detectable)
