"""Segmentation cells in studies: spec rules, the grid, a tiny 2D study run and reported, 3D end to end."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from medssl.errors import MedsslError
from medssl.study.presets import preset
from medssl.study.report import write_report
from medssl.study.runner import plan, run_study
from medssl.study.spec import parse_spec
from medssl.study.store import Store

BLOBS = "synthetic:blobs2d@24?n=16"


def seg_raw(**overrides: object) -> dict:
    raw = {
        "name": "tiny-seg",
        "task": "segment",
        "datasets": [BLOBS],
        "methods": ["scratch", "autoencoder"],
        "backbones": ["resnet10x0.25"],
        "label_counts": [2, 4],
        "seeds": 3,
        "pretrain": {"epochs": 1, "batch_size": 16, "seed": 0, "crops": 32},
        "finetune": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "patch_size": 16},
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(("overrides", "message"), [
    ({"imbalance_ratios": [1, 10]}, "no imbalance axis"),
    ({"policies": ["default", "focal"]}, "no policy axis"),
    ({"label_counts": [0, 2]}, "label counts must be whole numbers >= 1"),
    ({"label_counts": [2, 2]}, "label counts repeat"),
    ({"finetune": {"min_samples_per_epoch": 10}}, "unknown 'finetune' setting.*min_samples_per_epoch.*segment"),
    ({"masks": {"colour": "red"}}, "unknown 'masks' setting"),
    ({"task": "tabular"}, "unknown task 'tabular'; choose from classify, segment, detect, anomaly"),
    ({"label_fractions": [0.5]}, "not both"),
    ({"pretrain": {"crops": 0}}, "crops must be a whole number >= 1"),
])
def test_segmentation_spec_errors(overrides, message):
    with pytest.raises(MedsslError, match=message):
        parse_spec(seg_raw(**overrides))


def test_segmentation_settings_are_refused_in_classification_studies():
    classify = {**seg_raw(task="classify", finetune={}, pretrain={"epochs": 1}), "label_counts": None}
    for key, extra in (("label_counts", {"label_counts": [4]}), ("masks", {"masks": {"fov": "threshold"}}),
                       ("pretrain crops", {"pretrain": {"crops": 8}})):
        with pytest.raises(MedsslError, match=f"'{key}' is for segment"):
            parse_spec({**classify, **extra})
    with pytest.raises(MedsslError, match=r"unknown 'finetune' setting.*patch_size.*classify"):
        parse_spec({**classify, "finetune": {"patch_size": 32}})
    parse_spec(classify)  # the same spec without them is a valid classification study


def test_classification_specs_keep_their_hash():
    """The new fields stay out of a classification spec's canonical form, so existing study DBs resume."""
    spec = preset("quick")
    assert not {"task", "label_counts", "masks"} & set(spec.to_dict())
    assert parse_spec(seg_raw()).to_dict()["task"] == "segment"


def test_grid_pretrains_once_per_method_on_crops_and_pairs_counts(tmp_path):
    cells = plan(parse_spec(seg_raw()), tmp_path)
    pretrains = [c for c in cells if c.kind == "pretrain"]
    finetunes = [c for c in cells if c.kind == "finetune"]
    assert len(pretrains) == 1 and pretrains[0].config["crops"] == {"n": 32, "patch": 16}
    assert len(finetunes) == 2 * 2 * 3  # methods x counts x seeds
    assert {c.config["label_count"] for c in finetunes} == {2, 4}
    assert all(c.key.startswith("segment/") and c.labels["task"] == "segment" for c in finetunes)
    assert all((c.depends_on is None) == (c.labels["method"] == "scratch") for c in finetunes)


def test_segmentation_pretraining_crops_come_from_training_images_only(monkeypatch):
    from medssl.study import runner

    asked = {}

    def fake_patches(data, patch, n, seed=0, splits=("train",)):
        asked["splits"] = splits
        return "pool"

    monkeypatch.setattr(runner, "random_patches", fake_patches)
    pretrain = next(c for c in plan(parse_spec(seg_raw()), "runs") if c.kind == "pretrain")
    assert runner._pretraining_data(pretrain.config, {}) == "pool"
    assert asked["splits"] == ("train",)


@pytest.fixture(scope="module")
def seg_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-study")
    spec = parse_spec(seg_raw())
    outcome = run_study(spec, root / "results.db", root / "runs")
    assert not outcome.failures, outcome.failures
    return spec, root


def test_a_transfer_setting_applies_to_pretrained_arms_and_leaves_scratch_cells_shared(tmp_path):
    both = plan(parse_spec(seg_raw()), tmp_path)
    encoder = plan(parse_spec(seg_raw(finetune={**seg_raw()["finetune"], "transfer": "encoder"})), tmp_path)
    scratch = [c.key for c in both if c.labels["method"] == "scratch"]
    assert scratch == [c.key for c in encoder if c.labels["method"] == "scratch"]  # reused, not re-run
    assert {c.config.get("transfer") for c in encoder if c.kind == "finetune" and c.labels["method"] != "scratch"} \
        == {"encoder"}
    def pretrained_arms(cells: list) -> set[str]:
        return {c.key for c in cells if c.kind == "finetune" and c.labels["method"] != "scratch"}

    assert not pretrained_arms(both) & pretrained_arms(encoder)
    assert [c.key for c in both if c.kind == "pretrain"] == [c.key for c in encoder if c.kind == "pretrain"]


def test_segmentation_study_records_dice_per_cell(seg_study):
    spec, root = seg_study
    store = Store(root / "results.db", create=False)
    try:
        rows = store.results(spec.hash)
        (pre,) = store.results(spec.hash, kind="pretrain")
    finally:
        store.close()
    assert len(rows) == 12
    for row in rows:
        metrics = json.loads(row["metrics"])
        assert row["task"] == "segment" and row["test_auc"] is None
        assert row["test_dice"] == pytest.approx(metrics["test"]["dice"]) and 0.0 <= row["test_dice"] <= 1.0
        assert row["n_labelled"] == row["label_count"] == len(metrics["train"]["images"])
        expected = "none" if row["method"] == "scratch" else "both"  # the autoencoder's decoder is transferred
        assert metrics["transfer"] == expected
    assert pre["method"] == "autoencoder" and pre["seed"] == 0
    # the labelled images of a seed are nested across counts, and differ between seeds
    images = {(r["seed"], r["label_count"], r["method"]): json.loads(r["metrics"])["train"]["images"] for r in rows}
    for seed in range(3):
        assert set(images[(seed, 2, "scratch")]) <= set(images[(seed, 4, "scratch")])
        assert images[(seed, 4, "scratch")] == images[(seed, 4, "autoencoder")]
    assert len({tuple(images[(seed, 2, "scratch")]) for seed in range(3)}) > 1


def test_segmentation_study_rerun_skips_finished_cells(seg_study):
    spec, root = seg_study
    outcome = run_study(spec, root / "results.db", root / "runs")
    assert outcome.counts == {"done": 13} and outcome.minutes < 0.5


def test_segmentation_report_uses_dice_and_labelled_images(seg_study, tmp_path):
    _, root = seg_study
    report = write_report(root / "results.db", tmp_path / "report.html")
    markdown = (tmp_path / "report.md").read_text()
    conditions, pairs = report.tables
    assert conditions.columns[2] == "labels" and "Dice mean" in conditions.columns
    assert "AUC mean" not in conditions.columns and "minority recall mean" not in conditions.columns
    conn = sqlite3.connect(root / "results.db")
    dice = {}
    for method, count, value in conn.execute("SELECT method, label_count, test_dice FROM results "
                                             "WHERE kind='finetune'"):
        dice.setdefault((method, count), []).append(value)
    conn.close()
    mean_col, hd95_col = conditions.columns.index("Dice mean"), conditions.columns.index("hd95 mean")
    for row in conditions.rows:
        count = int(row[2].split()[0])
        assert float(row[mean_col]) == pytest.approx(np.mean(dice[(row[0], count)]), abs=5e-4)
        assert float(row[hd95_col]) >= 0 and {"iou mean", "sensitivity mean"} <= set(conditions.columns)
        assert row[conditions.columns.index("transfer")] == ("none" if row[0] == "scratch" else "both")
    assert [row[2] for row in pairs.rows] == ["2 labelled images", "4 labelled images"]
    assert all(row[-1] == "seeds × test images" for row in pairs.rows)  # per-image Dice carries test noise
    assert all("Dice" in line and "AUC" not in line for line in report.findings)
    assert any("with 4 labelled images" in line for line in report.findings)
    captions = [caption for caption, _ in report.figures]
    assert captions[0].startswith("Test Dice vs labelled images") and not any("confusion" in c for c in captions)
    assert "Δ Dice [95 % CI]" in markdown


def test_a_3d_segmentation_study_runs_end_to_end(tmp_path):
    raw = seg_raw(datasets=["synthetic:blobs3d@16?n=8"], label_counts=[2], seeds=1,
                  finetune={"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "patch_size": 16},
                  pretrain={"epochs": 1, "batch_size": 4, "seed": 0, "crops": 8})
    outcome = run_study(parse_spec(raw), tmp_path / "r.db", tmp_path / "runs")
    assert outcome.counts == {"done": 3} and not outcome.failures
    conn = sqlite3.connect(tmp_path / "r.db")
    (metrics,) = conn.execute("SELECT metrics FROM results WHERE method='autoencoder' AND kind='finetune'").fetchone()
    conn.close()
    assert json.loads(metrics)["transfer"] == "both"


def test_databases_of_older_releases_gain_the_new_columns(tmp_path):
    db = tmp_path / "old.db"
    Store(db).close()
    conn = sqlite3.connect(db)  # rebuild results as the previous release created it
    conn.executescript("DROP TRIGGER results_are_final_update; DROP TRIGGER results_are_final_delete;"
                       "ALTER TABLE results DROP COLUMN task; ALTER TABLE results DROP COLUMN label_count;"
                       "ALTER TABLE results DROP COLUMN test_dice; ALTER TABLE results DROP COLUMN predictions;"
                       "ALTER TABLE results DROP COLUMN minority_recall_thresholded;")
    conn.close()
    Store(db).close()
    conn = sqlite3.connect(db)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    conn.close()
    assert {"task", "label_count", "test_dice", "predictions", "minority_recall_thresholded"} <= columns

