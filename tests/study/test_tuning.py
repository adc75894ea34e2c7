"""Per-arm fine-tuning choices from a stated grid, selected on validation only, the same grid for every arm."""

from __future__ import annotations

import json
import sqlite3

import pytest

from medssl.errors import MedsslError
from medssl.study.runner import run_study
from medssl.study.tuning import check_grid, grid_points, point_overrides, run_grid
from tests.study.conftest import tiny_spec


def test_grid_points_cover_every_combination_in_a_fixed_order():
    grid = check_grid({"mode": ["full", "lp-ft"], "lr": [1e-3, 3e-4]})
    assert grid_points(grid) == [{"lr": 1e-3, "mode": "full"}, {"lr": 1e-3, "mode": "lp-ft"},
                                 {"lr": 3e-4, "mode": "full"}, {"lr": 3e-4, "mode": "lp-ft"}]
    assert point_overrides({"lr": 1e-3, "mode": "lp-ft"}) == {"lr": 1e-3, "lp_ft": True}


@pytest.mark.parametrize(("grid", "match"), [
    ({"momentum": [0.9]}, "unknown finetune grid setting"),
    ({"mode": ["linear"]}, "grid mode must be among"),
    ({"lr": [0.001, 0.001]}, "distinct values"),
    ({"encoder_lr_mult": [0]}, "numbers > 0"),
    ([], "must be a mapping"),
])
def test_a_bad_grid_is_one_clear_error(grid, match):
    with pytest.raises(MedsslError, match=match):
        tiny_spec(finetune={"epochs": 1, "grid": grid})


def test_run_grid_keeps_the_best_validation_point_and_never_reads_test(tmp_path):
    val_scores = {1e-3: 0.7, 3e-4: 0.9, 1e-4: 0.9}  # a tie: the earlier point wins

    def run_point(overrides, out):
        # test AUC anti-correlated with validation: selecting on test would pick the other point
        metrics = {"val": {"auc": val_scores[overrides["lr"]]}, "test": {"auc": 1 - val_scores[overrides["lr"]]},
                   "duration_s": 1.0}
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(metrics))
        (out / "predictions.csv").write_text(f"lr {overrides['lr']}\n")
        return metrics

    metrics = run_grid(tmp_path, check_grid({"lr": [1e-3, 3e-4, 1e-4]}), run_point)
    assert metrics["selection"]["chosen"] == {"lr": 3e-4}
    assert metrics["selection"]["total_duration_s"] == 3.0
    assert (tmp_path / "predictions.csv").read_text() == "lr 0.0003\n"
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_every_arm_scratch_included_tunes_on_the_same_grid_and_records_it(tmp_path):
    grid = {"lr": [1e-3, 3e-3], "mode": ["full", "lp-ft"]}
    spec = tiny_spec(label_fractions=[1.0], seeds=1,
                     finetune={"epochs": 1, "batch_size": 16, "min_samples_per_epoch": 32, "grid": grid})
    outcome = run_study(spec, tmp_path / "r.db", tmp_path / "runs")
    assert not outcome.failures, outcome.failures
    conn = sqlite3.connect(tmp_path / "r.db")
    rows = conn.execute("SELECT method, metrics, config FROM results WHERE kind='finetune'").fetchall()
    assert sorted(r[0] for r in rows) == ["rotation", "scratch"]
    for _, metrics_json, config_json in rows:
        selection = json.loads(metrics_json)["selection"]
        assert selection["grid"] == grid and len(selection["val_score_by_point"]) == 4
        best = max(p["val_score"] for p in selection["val_score_by_point"])
        first_best = next(p["point"] for p in selection["val_score_by_point"] if p["val_score"] == best)
        assert selection["chosen"] == first_best
        config = json.loads(config_json)
        assert config["lr"] == first_best["lr"] and config["lp_ft"] == (first_best["mode"] == "lp-ft")
