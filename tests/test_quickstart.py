"""The main job end to end, shrunk to seconds: its files and its table are consistent with its runs."""

import csv
import json
import sqlite3

import pytest

from medssl.errors import MedsslError
from medssl.quickstart import QuickSettings, quickstart

TINY = QuickSettings(width=0.125, pretrain_epochs=1, pretrain_batch=32, finetune_epochs=1, min_samples_per_epoch=32,
                     fractions=(0.1, 1.0))


def test_quickstart_writes_results_and_report_that_agree(tmp_path, capsys):
    rows = quickstart(data="synthetic:lesions2d?n=160", out=tmp_path / "qs", seeds=2, settings=TINY)
    assert len(rows) == 2 * 2 * 2  # fractions x seeds x arms
    with open(tmp_path / "qs" / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert [float(r["test_auc"]) for r in written] == pytest.approx([r["test_auc"] for r in rows])
    # nested subsets: the labelled count grows with the fraction and is the same for both arms
    counts = {(r["arm"], r["label_fraction"]): r["n_labelled"] for r in rows}
    assert counts[("scratch", 0.1)] == counts[("simclr", 0.1)] < counts[("scratch", 1.0)]
    summary = json.loads((tmp_path / "qs" / "metrics.json").read_text())["summary"]
    first = summary[0]
    paired = [b["test_auc"] - a["test_auc"] for a in rows for b in rows
              if a["arm"] == "scratch" and b["arm"] == "simclr" and a["seed"] == b["seed"]
              and a["label_fraction"] == b["label_fraction"] == 0.1]
    assert first["delta_auc"] == pytest.approx(sum(paired) / len(paired))
    report = (tmp_path / "qs" / "report.md").read_text()
    assert "| label_fraction |" in report and "delta_auc" in report
    assert "delta_auc" in capsys.readouterr().out
    # the quick study's database and HTML report come with it, and agree with the table
    with sqlite3.connect(tmp_path / "qs" / "results.db") as db:
        stored = dict(db.execute("SELECT run_dir, test_auc FROM results WHERE kind='finetune'").fetchall())
    assert {r["run_dir"]: r["test_auc"] for r in rows} == pytest.approx(stored)
    assert (tmp_path / "qs" / "report.html").read_text().count("data:image/png;base64,") >= 2  # AUC vs labels,
    assert "## Answer" in report and "## Protocol" in report  # confusion matrices; no one-bar policy chart


def test_quickstart_refuses_to_overwrite_a_finished_run(tmp_path):
    (tmp_path / "qs").mkdir()
    (tmp_path / "qs" / "metrics.json").write_text("{}")
    with pytest.raises(MedsslError, match="already holds a finished run"):
        quickstart(data="synthetic:lesions2d?n=160", out=tmp_path / "qs", settings=TINY)


def test_quickstart_rejects_bad_seeds_and_data_before_writing(tmp_path):
    with pytest.raises(MedsslError, match="at least one seed"):
        quickstart(data="synthetic:lesions2d?n=160", out=tmp_path / "a", seeds=0, settings=TINY)
    with pytest.raises(MedsslError, match="data not found"):
        quickstart(data=str(tmp_path / "missing"), out=tmp_path / "b", settings=TINY)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_interrupted_quickstart_resumes_from_its_database(tmp_path, capsys):
    first = quickstart(data="synthetic:lesions2d?n=160", out=tmp_path / "qs", seeds=1, settings=TINY)
    with sqlite3.connect(tmp_path / "qs" / "results.db") as db:
        finished = db.execute("SELECT cell_key, finished_at FROM results ORDER BY cell_key").fetchall()
    (tmp_path / "qs" / "metrics.json").unlink()  # as if killed before the summary was written
    again = quickstart(data="synthetic:lesions2d?n=160", out=tmp_path / "qs", seeds=1, settings=TINY)
    assert "resuming" in capsys.readouterr().err
    assert [r["test_auc"] for r in again] == [r["test_auc"] for r in first]
    with sqlite3.connect(tmp_path / "qs" / "results.db") as db:
        assert db.execute("SELECT cell_key, finished_at FROM results ORDER BY cell_key").fetchall() == finished
