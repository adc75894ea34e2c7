"""The study database: exclusive claims, dead workers' cells come back, results are written once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from medssl.errors import MedsslError
from medssl.study.store import Cell, Store


def cells() -> list[Cell]:
    pre = Cell("pre", "pretrain", None, {"a": 1}, {}, "/runs/pre", 0)
    dependent = Cell("ft-ssl", "finetune", "pre", {"b": 2}, {}, "/runs/ft-ssl", 1)
    scratch = Cell("ft-scratch", "finetune", None, {"c": 3}, {}, "/runs/ft-scratch", 2)
    return [pre, dependent, scratch]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    s.register("h", "study", {"x": 1}, cells())
    yield s
    s.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_are_exclusive_and_respect_dependencies(store, tmp_path):
    other = Store(tmp_path / "db.sqlite")
    first = store.claim("h", "w1")
    second = other.claim("h", "w2")
    assert (first.key, second.key) == ("pre", "ft-scratch")  # ft-ssl waits for its pre-training
    assert other.claim("h", "w2") is None
    store.finish("pre", {"kind": "pretrain", "spec_hash": "h", "config": "{}", "metrics": "{}", "run_dir": "/runs/pre"})
    assert other.claim("h", "w2").key == "ft-ssl"
    other.close()


def test_a_dead_workers_cell_is_claimed_again(store):
    cell = store.claim("h", "w1")
    store.conn.execute("UPDATE cells SET pid=? WHERE key=?", (_dead_pid(), cell.key))
    again = store.claim("h", "w2")
    assert again.key == cell.key
    attempts = store.conn.execute("SELECT attempts FROM cells WHERE key=?", (cell.key,)).fetchone()[0]
    assert attempts == 2


def test_a_silent_worker_on_another_host_loses_its_lease(tmp_path):
    store = Store(tmp_path / "db.sqlite", lease_s=5)
    store.register("h", "study", {}, cells())
    cell = store.claim("h", "w1")
    store.conn.execute("UPDATE cells SET host='elsewhere', heartbeat=? WHERE key=?", (time.time() - 60, cell.key))
    assert store.claim("h", "w2").key == cell.key
    store.close()


def test_live_workers_keep_their_cells(store):
    store.claim("h", "w1")  # this process is alive and its heartbeat fresh
    assert store.claim("h", "w2").key == "ft-scratch"


def test_results_are_inserted_once_and_never_rewritten(store):
    store.claim("h", "w1")
    row = {"kind": "pretrain", "spec_hash": "h", "config": "{}", "metrics": '{"v": 1}', "run_dir": "/runs/pre"}
    assert store.finish("pre", row) is True
    assert store.finish("pre", {**row, "metrics": '{"v": 2}'}) is False
    assert store.result("pre")["metrics"] == '{"v": 1}'
    with pytest.raises(sqlite3.DatabaseError, match="never rewritten"):
        store.conn.execute("UPDATE results SET metrics='{}'")
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        store.conn.execute("DELETE FROM results")


def test_a_failed_pretraining_fails_its_dependents_and_a_new_registration_retries(store):
    store.claim("h", "w1")
    store.fail("pre", "w1", "boom")
    store.claim("h", "w1")  # ft-scratch; the cascade marks ft-ssl failed
    assert dict(store.failures("h")) == {"pre": "boom", "ft-ssl": "its pre-training cell failed"}
    store.register("h", "study", {"x": 1}, cells())
    assert store.counts("h") == {"pending": 2, "running": 1}


def test_unreadable_databases_are_refused_without_writing(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    before = garbage.read_bytes()
    with pytest.raises(MedsslError, match="not a readable SQLite study database"):
        Store(garbage)
    assert garbage.read_bytes() == before
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MedsslError, match="not a medssl study database"):
        Store(foreign)
    with pytest.raises(MedsslError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(MedsslError, match="no directory"):
        Store(tmp_path / "missing" / "db.sqlite")
