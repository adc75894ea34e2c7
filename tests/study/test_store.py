"""The study database, on SQLite and on a real PostgreSQL: exclusive claims, dead workers' cells come back,
results are written once with their metric values, old SQLite files still open, bad databases are refused."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from medssl.errors import MedsslError
from medssl.study.schema import flatten_metrics
from medssl.study.store import Cell, Store
from tests.study.postgres import PASSWORD, PASSWORD_ROLE


def cells() -> list[Cell]:
    pre = Cell("pre", "pretrain", None, {"a": 1}, {}, "/runs/pre", 0)
    dependent = Cell("ft-ssl", "finetune", "pre", {"b": 2}, {}, "/runs/ft-ssl", 1)
    scratch = Cell("ft-scratch", "finetune", None, {"c": 3}, {}, "/runs/ft-scratch", 2)
    return [pre, dependent, scratch]


def row(metrics: dict | None = None, kind: str = "pretrain") -> dict:
    return {"kind": kind, "spec_hash": "h", "config": "{}", "metrics": json.dumps(metrics or {}),
            "run_dir": "/runs/pre"}


def sql(store: Store, statement: str, **params: object) -> list[tuple]:
    with store.engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        return [tuple(r) for r in result] if result.returns_rows else []


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.register("h", "study", {"x": 1}, cells())
    yield s
    s.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_are_exclusive_and_respect_dependencies(store, db_url):
    other = Store(db_url)
    first = store.claim("h", "w1")
    second = other.claim("h", "w2")
    assert (first.key, second.key) == ("pre", "ft-scratch")  # ft-ssl waits for its pre-training
    assert other.claim("h", "w2") is None
    store.finish("pre", row())
    assert other.claim("h", "w2").key == "ft-ssl"
    other.close()


def test_a_dead_workers_cell_on_this_host_is_claimed_again_at_once_on_sqlite(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.register("h", "study", {}, cells())
    cell = store.claim("h", "w1")
    sql(store, "UPDATE cells SET pid=:pid WHERE key=:key", pid=_dead_pid(), key=cell.key)
    again = store.claim("h", "w2")
    assert again.key == cell.key
    assert sql(store, "SELECT attempts FROM cells WHERE key=:key", key=cell.key) == [(2,)]
    store.close()


def test_a_silent_worker_loses_its_lease(db_url):
    store = Store(db_url, lease_s=5)
    store.register("h", "study", {}, cells())
    cell = store.claim("h", "w1")
    assert store.claim("h", "w2").key != cell.key  # fresh lease: kept
    sql(store, "UPDATE cells SET host='elsewhere', heartbeat=heartbeat - 60 WHERE key=:key", key=cell.key)
    assert store.claim("h", "w3").key == cell.key
    assert sql(store, "SELECT worker, attempts FROM cells WHERE key=:key", key=cell.key) == [("w3", 2)]
    store.close()


def test_a_heartbeat_renews_only_the_cell_its_worker_runs(store):
    cell = store.claim("h", "w1")
    sql(store, "UPDATE cells SET heartbeat = heartbeat - 60")
    store.heartbeat("w1", "another-key")
    assert sql(store, "SELECT heartbeat < :t FROM cells WHERE key=:key", t=store.now() - 30, key=cell.key)[0][0]
    store.heartbeat("w1", cell.key)
    assert not sql(store, "SELECT heartbeat < :t FROM cells WHERE key=:key", t=store.now() - 30, key=cell.key)[0][0]


def test_live_workers_keep_their_cells(store):
    store.claim("h", "w1")  # this process is alive and its heartbeat fresh
    assert store.claim("h", "w2").key == "ft-scratch"


def test_results_are_inserted_once_with_their_metric_values_and_never_rewritten(store):
    store.claim("h", "w1")
    metrics = {"test": {"auc": 0.75, "per_class_recall": [0.5, 1.0], "note": "x"}, "duration_s": 3, "loss": None}
    assert store.finish("pre", row(metrics)) is True
    assert store.finish("pre", row({"test": {"auc": 0.1}})) is False
    stored = store.result("pre")
    assert json.loads(stored["metrics"]) == metrics
    assert stored["metric_values"] == {"test.auc": 0.75, "test.per_class_recall.0": 0.5,
                                       "test.per_class_recall.1": 1.0, "duration_s": 3.0}
    assert store.results("h", kind="pretrain")[0]["metric_values"] == stored["metric_values"]
    for statement, verb in (("UPDATE results SET metrics='{}'", "rewritten"), ("DELETE FROM results", "deleted"),
                            ("UPDATE metric_values SET value=0", "rewritten"),
                            ("DELETE FROM metric_values", "deleted")):
        with pytest.raises(sa.exc.DBAPIError, match=f"never {verb}"):
            sql(store, statement)
    assert sql(store, "SELECT COUNT(*) FROM metric_values") == [(4,)]


def test_metric_values_flatten_numbers_under_dotted_names():
    assert flatten_metrics({"a": {"b": 1, "c": [2.5, float("nan")], "d": True, "e": "text"}}) == {
        "a.b": 1.0, "a.c.0": 2.5, "a.c.1": None, "a.d": 1.0}


def test_a_failed_pretraining_fails_its_dependents_and_a_new_registration_retries(store):
    store.claim("h", "w1")
    store.fail("pre", "w1", "boom")
    store.claim("h", "w1")  # ft-scratch; the cascade marks ft-ssl failed
    assert dict(store.failures("h")) == {"pre": "boom", "ft-ssl": "its pre-training cell failed"}
    store.register("h", "study", {"x": 1}, cells())
    assert store.counts("h") == {"pending": 2, "running": 1}


def test_a_database_of_the_previous_release_opens_and_gains_the_new_columns_and_values(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)  # the schema medssl wrote before the SQLAlchemy store (and before segmentation)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('medssl_study_db', '1');
        CREATE TABLE studies (spec_hash TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL,
            created REAL NOT NULL);
        CREATE TABLE cells (key TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, depends_on TEXT, config TEXT NOT NULL,
            labels TEXT NOT NULL, run_dir TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
            worker TEXT, host TEXT, pid INTEGER, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT);
        CREATE TABLE study_cells (spec_hash TEXT NOT NULL, cell_key TEXT NOT NULL, PRIMARY KEY (spec_hash, cell_key));
        CREATE TABLE results (cell_key TEXT PRIMARY KEY NOT NULL, spec_hash TEXT NOT NULL, kind TEXT NOT NULL,
            dataset TEXT, upstream TEXT, method TEXT, backbone TEXT, width REAL, label_fraction REAL,
            imbalance_ratio REAL, policy TEXT, seed INTEGER, test_auc REAL, minority_class INTEGER,
            minority_recall REAL, n_labelled INTEGER, config TEXT NOT NULL, metrics TEXT NOT NULL,
            run_dir TEXT NOT NULL, duration_s REAL, started_at REAL, finished_at REAL, worker TEXT,
            medssl_version TEXT);
        INSERT INTO studies VALUES ('h', 'old', '{}', 1.0);
        INSERT INTO cells (key, kind, config, labels, run_dir, seq, status)
            VALUES ('a', 'finetune', '{}', '{}', '/r', 0, 'done');
        INSERT INTO study_cells VALUES ('h', 'a');
        INSERT INTO results (cell_key, spec_hash, kind, test_auc, config, metrics, run_dir)
            VALUES ('a', 'h', 'finetune', 0.8, '{}', '{"test": {"auc": 0.8}}', '/r');
    """)
    conn.close()
    store = Store(db, create=False)  # reading (a report) is enough to bring it up to date
    [old] = store.results("h")
    assert old["test_auc"] == 0.8 and old["test_dice"] is None and old["metric_values"] == {"test.auc": 0.8}
    assert {"claimed"} <= {c for (_, c, *_) in sql(store, "PRAGMA table_info(cells)")}
    with pytest.raises(sa.exc.DBAPIError, match="never rewritten"):
        sql(store, "UPDATE results SET test_auc=0")
    store.close()


def test_unreadable_sqlite_databases_are_refused_without_writing(tmp_path):
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
    with pytest.raises(MedsslError, match="unsupported study database"):
        Store("mysql://u@h/db")


def test_bad_postgresql_databases_are_refused_in_one_line_without_writing(postgres_server, pg_url):
    started = time.monotonic()
    unreachable = postgres_server.url("db").replace(f":{postgres_server.port}/", ":1/")
    wrong_password = postgres_server.url(pg_url.rsplit("/", 1)[1], PASSWORD_ROLE, "wrong")
    for url, message in ((unreachable, "cannot open study database"), (wrong_password, "password authentication"),
                         (postgres_server.url("no_such_db"), "does not exist")):
        with pytest.raises(MedsslError, match=message) as caught:
            Store(url)
        assert "\n" not in str(caught.value) and "wrong" not in str(caught.value)  # one line, password hidden
    assert time.monotonic() - started < 30  # refused, not retried for minutes
    right = postgres_server.url(pg_url.rsplit("/", 1)[1], PASSWORD_ROLE, PASSWORD)
    with pytest.raises(MedsslError, match="holds no medssl study"):
        Store(right, create=False)
    foreign = Store(right)  # now a study database; a foreign table elsewhere makes one not a study database
    foreign.close()
    other = postgres_server.new_database()
    with sa.create_engine(other.replace("postgresql://", "postgresql+psycopg://")).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE patients (id INTEGER)")
    with pytest.raises(MedsslError, match="not a medssl study database"):
        Store(other)
    with sa.create_engine(other.replace("postgresql://", "postgresql+psycopg://")).connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["patients"]  # nothing written
