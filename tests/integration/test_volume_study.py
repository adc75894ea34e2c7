"""A 3D classification study end to end from files: labelled NIfTI volumes listed by a manifest CSV and by an
MSD datalist (classes in dataset.json), encoders pre-trained on another, unlabeled folder of volumes
(``upstream:``), scratch vs SimCLR, through to the report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from medssl.cli import main
from medssl.runio import read_yaml
from medssl.study.runner import run_study
from medssl.study.spec import parse_spec
from tests.data.layouts import write_msd_classification, write_volume_folder, write_volume_manifest

TINY = {"methods": ["scratch", "simclr"], "backbones": ["resnet10x0.125"], "label_fractions": [1.0], "seeds": 1,
        "pretrain": {"epochs": 1, "batch_size": 4, "seed": 0},
        "finetune": {"epochs": 1, "batch_size": 4, "min_samples_per_epoch": 8}}


def test_a_volume_study_from_a_manifest_and_an_msd_layout_reaches_its_report(tmp_path):
    manifest = write_volume_manifest(tmp_path / "manifest", n=16)
    msd = write_msd_classification(tmp_path / "msd", n=16)
    corpus = write_volume_folder(tmp_path / "corpus", n=6)
    spec = parse_spec({"name": "volumes", "datasets": [str(manifest), str(msd)], "upstream": [str(corpus)],
                       "size": 16, **TINY})
    outcome = run_study(spec, tmp_path / "study.db", tmp_path / "runs")
    assert outcome.failures == [] and outcome.counts == {"done": 5}  # 1 encoder + 2 datasets x 2 methods

    with sqlite3.connect(tmp_path / "study.db") as conn:
        rows = conn.execute("SELECT kind, dataset, upstream, method, n_labelled, run_dir FROM results").fetchall()
    pretrained = [r for r in rows if r[0] == "pretrain"]
    assert [(r[1], r[3]) for r in pretrained] == [(str(corpus), "simclr")]
    finetuned = {(r[1], r[3]): r for r in rows if r[0] == "finetune"}
    assert set(finetuned) == {(str(d), m) for d in (manifest, msd) for m in ("scratch", "simclr")}
    assert {finetuned[(str(d), "simclr")][2] for d in (manifest, msd)} == {str(corpus)}
    assert all(row[4] >= 2 for row in finetuned.values())  # labelled volumes were trained on (MSD classes read)
    # the encoder came from the other corpus, whose conventions (per-volume min-max, no modality) were recorded
    summary = read_yaml(Path(pretrained[0][5]) / "config.yaml")["data_summary"]
    assert summary["image_shape"] == [16, 16, 16] and summary["conventions"]["intensity"] == ["minmax"]

    assert main(["study", "report", "--db", str(tmp_path / "study.db"), "--out", str(tmp_path / "report.html")]) == 0
    text = (tmp_path / "report.md").read_text()
    for dataset in (manifest, msd):
        assert f"## {dataset}" in text
    assert f"| simclr | {corpus} | 100 % labels | 1 |" in text


def test_a_volume_study_may_sample_patches_instead_of_resizing(tmp_path):
    manifest = write_volume_manifest(tmp_path / "manifest", n=12)
    corpus = write_volume_folder(tmp_path / "corpus", n=4)
    spec = parse_spec({"name": "patches", "datasets": [str(manifest)], "upstream": [str(corpus)],
                       "run": {"patch": "12"}, **TINY})
    outcome = run_study(spec, tmp_path / "study.db", tmp_path / "runs")
    assert outcome.failures == [] and outcome.counts == {"done": 3}
