"""The runner: each encoder pre-trained once and shared; re-runs skip; kill -9 loses nothing; workers never
duplicate a cell."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from medssl.study.runner import plan, run_study
from tests.study.conftest import tiny_spec, write_spec

ROOT = Path(__file__).resolve().parents[2]


def _rows(db: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _study(spec_path: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "medssl.cli", "study", "run", str(spec_path), "--db", str(db),
                             "--out", str(db.parent / "runs"), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_each_encoder_is_pretrained_once_and_shared_by_its_finetuning_cells(tmp_path):
    cells = plan(tiny_spec(policies=["default", "focal"]), tmp_path)
    pretrains = [c for c in cells if c.kind == "pretrain"]
    finetunes = [c for c in cells if c.kind == "finetune"]
    assert len(pretrains) == 2  # rotation x 2 seeds
    assert len(finetunes) == 2 * 2 * 2 * 2  # methods x fractions x policies x seeds
    assert {c.depends_on for c in finetunes if c.labels["method"] == "scratch"} == {None}
    for seed in (0, 1):
        users = {c.depends_on for c in finetunes if c.labels["method"] == "rotation" and c.labels["seed"] == seed}
        assert len(users) == 1 and users <= {p.key for p in pretrains}
    assert len({c.key for c in cells}) == len(cells) and all(c.run_dir.startswith(str(tmp_path)) for c in cells)
    shared = plan(tiny_spec(pretrain={"epochs": 1, "batch_size": 32, "seed": 0}), tmp_path)
    assert sum(c.kind == "pretrain" for c in shared) == 1  # one encoder for every fine-tuning seed


def test_other_upstream_data_adds_encoders_but_not_scratch_arms(tmp_path):
    cells = plan(tiny_spec(upstream=["same", "other.npz"]), tmp_path)
    pretrain_data = sorted({c.config["data"] for c in cells if c.kind == "pretrain"})
    assert pretrain_data == sorted([tiny_spec().datasets[0], "other.npz"])
    finetunes = [c for c in cells if c.kind == "finetune"]
    assert sum(c.labels["method"] == "scratch" for c in finetunes) == 2 * 2  # fractions x seeds, once
    assert sum(c.labels["upstream"] == "other.npz" for c in finetunes) == 2 * 2
    assert {c.config["data"] for c in finetunes} == {tiny_spec().datasets[0]}  # fine-tuned on the downstream data


def test_a_rerun_of_a_finished_study_runs_nothing(finished_study):
    spec, db = finished_study
    before = _rows(db, "SELECT cell_key, finished_at FROM results ORDER BY cell_key")
    outcome = run_study(spec, db, db.parent / "runs")
    assert outcome.counts == {"done": len(before)}
    assert _rows(db, "SELECT cell_key, finished_at FROM results ORDER BY cell_key") == before
    assert _rows(db, "SELECT MAX(attempts) FROM cells") == [(1,)]


def test_kill_9_mid_study_then_rerun_keeps_every_finished_row(tmp_path):
    spec_path = write_spec(tmp_path / "spec.yaml")
    db = tmp_path / "results.db"
    proc = _study(spec_path, db)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            done = _rows(db, "SELECT COUNT(*) FROM results")[0][0]
        except sqlite3.OperationalError:  # not created yet
            done = 0
        if done >= 4:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _rows(db, "SELECT * FROM results ORDER BY cell_key")
    total = _rows(db, "SELECT COUNT(*) FROM cells")[0][0]
    assert 4 <= len(finished) < total, "the kill must land mid-study"

    rerun = _study(spec_path, db)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    after = _rows(db, "SELECT * FROM results ORDER BY cell_key")
    assert len(after) == total == len({row[0] for row in after})
    assert [row for row in after if row[0] in {f[0] for f in finished}] == finished  # earlier rows untouched
    assert _rows(db, "SELECT DISTINCT status FROM cells") == [("done",)]


def _wait_until(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _claimed_workers(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return _rows(db, "SELECT COUNT(DISTINCT worker) FROM cells WHERE worker IS NOT NULL")[0][0]
    except sqlite3.OperationalError:  # the schema is still being created
        return 0


def _pause_outside_a_transaction(proc: subprocess.Popen, db: Path) -> None:
    """SIGSTOP the worker, but never while it holds the database's write lock."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        conn = sqlite3.connect(db, timeout=1.0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.3)
        finally:
            conn.close()


def test_concurrent_workers_on_one_db_run_every_cell_exactly_once(tmp_path):
    spec_path = write_spec(tmp_path / "spec.yaml")
    db = tmp_path / "results.db"
    # the lone worker claims a cell and is paused; two more workers start: all three really share the study,
    # whatever the machine's load (otherwise the first could finish everything while the others import torch)
    first = _study(spec_path, db)
    _wait_until(lambda: _claimed_workers(db) >= 1)
    _pause_outside_a_transaction(first, db)
    pair = _study(spec_path, db, "--workers", "2")
    try:
        _wait_until(lambda: _claimed_workers(db) >= 2)
    finally:
        first.send_signal(signal.SIGCONT)
    for proc in (first, pair):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    cells = _rows(db, "SELECT COUNT(*) FROM cells")[0][0]
    assert cells == 2 + 2 * 2 * 2
    assert _rows(db, "SELECT COUNT(*), COUNT(DISTINCT cell_key) FROM results") == [(cells, cells)]
    assert _rows(db, "SELECT MIN(attempts), MAX(attempts) FROM cells") == [(1, 1)]  # nobody ran a cell twice
    assert _rows(db, "SELECT COUNT(DISTINCT worker) FROM results")[0][0] >= 2  # the work really was shared
    runs = list((tmp_path / "runs").glob("*/*/*/metrics.json"))
    assert len(runs) == cells


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def test_sigterm_to_a_multi_worker_study_stops_its_workers_and_a_rerun_finishes(tmp_path):
    slow = {"epochs": 200, "batch_size": 16, "min_samples_per_epoch": 32}  # minutes of work: it cannot finish
    spec_path = write_spec(tmp_path / "spec.yaml", finetune=slow)
    db = tmp_path / "results.db"
    proc = _study(spec_path, db, "--workers", "2")
    _wait_until(lambda: _claimed_workers(db) >= 1)
    workers = {pid for (pid,) in _rows(db, "SELECT DISTINCT pid FROM cells WHERE pid IS NOT NULL")}
    assert workers and proc.pid not in workers  # cells are claimed by worker processes
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    _wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=20)
    assert _rows(db, "SELECT COUNT(*) FROM cells WHERE status = 'done'")[0][0] < 10  # stopped mid-study
    write_spec(spec_path, finetune={**slow, "epochs": 1})  # finish quickly: another spec, same database
    rerun = _study(spec_path, db)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert _rows(db, "SELECT COUNT(*) FROM cells WHERE status = 'done'")[0][0] >= 10


def test_every_classification_row_points_at_its_runs_predictions(finished_study):
    from medssl.finetune.predictions import read_predictions

    _, db = finished_study
    rows = _rows(db, "SELECT run_dir, predictions, minority_recall, minority_recall_thresholded FROM results"
                     " WHERE kind='finetune'")
    assert rows
    for run_dir, predictions, argmax_recall, thresholded_recall in rows:
        assert predictions == str(Path(run_dir) / "predictions.csv")
        assert set(read_predictions(predictions)) == {"val", "test"}
        assert argmax_recall is not None and thresholded_recall is not None
