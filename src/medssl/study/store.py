"""The study database (SQLite, WAL): cells to run, claimed atomically with a lease, and final result rows.

A cell is claimed inside ``BEGIN IMMEDIATE`` (one writer at a time), so two workers never take the same
cell. A claimed cell whose worker died (same host: its pid is gone; elsewhere: no heartbeat for ``lease_s``)
goes back to pending. Result rows are inserted once and a trigger forbids rewriting or deleting them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medssl.errors import MedsslError

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (spec_hash TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL,
                                    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, depends_on TEXT, config TEXT NOT NULL, labels TEXT NOT NULL,
    run_dir TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', worker TEXT, host TEXT,
    pid INTEGER, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT);
CREATE TABLE IF NOT EXISTS study_cells (spec_hash TEXT NOT NULL, cell_key TEXT NOT NULL,
                                        PRIMARY KEY (spec_hash, cell_key));
CREATE TABLE IF NOT EXISTS results (
    cell_key TEXT PRIMARY KEY NOT NULL, spec_hash TEXT NOT NULL, kind TEXT NOT NULL, dataset TEXT, upstream TEXT,
    method TEXT, backbone TEXT, width REAL, label_fraction REAL, imbalance_ratio REAL, policy TEXT, seed INTEGER,
    test_auc REAL, minority_class INTEGER, minority_recall REAL, n_labelled INTEGER, config TEXT NOT NULL,
    metrics TEXT NOT NULL, run_dir TEXT NOT NULL, duration_s REAL, started_at REAL, finished_at REAL,
    worker TEXT, medssl_version TEXT, task TEXT, label_count INTEGER, test_dice REAL);
CREATE TRIGGER IF NOT EXISTS results_are_final_update BEFORE UPDATE ON results
    BEGIN SELECT RAISE(ABORT, 'finished results are never rewritten'); END;
CREATE TRIGGER IF NOT EXISTS results_are_final_delete BEFORE DELETE ON results
    BEGIN SELECT RAISE(ABORT, 'finished results are never deleted'); END;
"""
RESULT_COLUMNS = ("cell_key", "spec_hash", "kind", "dataset", "upstream", "method", "backbone", "width",
                  "label_fraction", "imbalance_ratio", "policy", "seed", "test_auc", "minority_class",
                  "minority_recall", "n_labelled", "config", "metrics", "run_dir", "duration_s", "started_at",
                  "finished_at", "worker", "medssl_version", "task", "label_count", "test_dice", "predictions",
                  "minority_recall_thresholded")
ADDED_COLUMNS = {"task": "TEXT", "label_count": "INTEGER", "test_dice": "REAL",  # since segmentation studies
                 "predictions": "TEXT", "minority_recall_thresholded": "REAL"}  # since per-sample predictions


@dataclass
class Cell:
    key: str
    kind: str  # "pretrain" | "finetune"
    depends_on: str | None  # the pretrain cell whose encoder a fine-tuning cell starts from
    config: dict
    labels: dict
    run_dir: str
    seq: int


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=120, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def check_readable(path: Path) -> None:
    """Refuse, without writing anything, a path that is not (or cannot become) a medssl study database."""
    if path.is_dir():
        raise MedsslError(f"{path} is a directory, not a study database")
    if not path.exists():
        if not path.parent.is_dir():
            raise MedsslError(f"cannot create study database {path}: no directory {path.parent}")
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            marker = (conn.execute("SELECT value FROM meta WHERE key='medssl_study_db'").fetchone()
                      if "meta" in tables else None)
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise MedsslError(f"{path}: not a readable SQLite study database ({err})") from None
    if tables and marker is None:
        raise MedsslError(f"{path}: a SQLite database but not a medssl study database")
    if marker is not None and marker[0] != SCHEMA_VERSION:
        raise MedsslError(f"{path}: study database schema {marker[0]}, this medssl reads {SCHEMA_VERSION}")


class Store:
    def __init__(self, path: str | Path, *, create: bool = True, lease_s: float = 120.0) -> None:
        self.path = Path(path)
        check_readable(self.path)
        if not self.path.exists() and not create:
            raise MedsslError(f"study database not found: {self.path}")
        self.lease_s = lease_s
        self.host = socket.gethostname()
        self.conn = _connect(self.path)
        if create:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} INSERT OR IGNORE INTO meta VALUES"
                                    f" ('medssl_study_db', '{SCHEMA_VERSION}'); COMMIT;")
            self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Databases of older releases lack the columns added since; nullable, so old rows stay valid."""
        with self.transaction() as db:
            present = {r["name"] for r in db.execute("PRAGMA table_info(results)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- planning -------------------------------------------------------------------------------------
    def register(self, spec_hash: str, name: str, spec: dict, cells: list[Cell]) -> None:
        """Add the study and its cells (existing cells are kept as they are; failed ones are retried)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?)",
                       (spec_hash, name, json.dumps(spec, sort_keys=True), time.time()))
            db.executemany(
                "INSERT OR IGNORE INTO cells (key, kind, depends_on, config, labels, run_dir, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(c.key, c.kind, c.depends_on, json.dumps(c.config, sort_keys=True), json.dumps(c.labels),
                  c.run_dir, c.seq) for c in cells])
            db.executemany("INSERT OR IGNORE INTO study_cells VALUES (?, ?)", [(spec_hash, c.key) for c in cells])
            db.execute("UPDATE cells SET status='pending', error=NULL WHERE status='failed' AND key IN"
                       " (SELECT cell_key FROM study_cells WHERE spec_hash=?)", (spec_hash,))

    # --- claiming -------------------------------------------------------------------------------------
    def _release_dead(self, db: sqlite3.Connection) -> None:
        now = time.time()
        for row in db.execute("SELECT key, host, pid, heartbeat FROM cells WHERE status='running'").fetchall():
            silent = (row["heartbeat"] or 0) < now - self.lease_s
            if silent or (row["host"] == self.host and not _pid_alive(row["pid"])):
                db.execute("UPDATE cells SET status='pending', worker=NULL WHERE key=? AND status='running'",
                           (row["key"],))
        db.execute("UPDATE cells SET status='failed', error='its pre-training cell failed' WHERE status='pending'"
                   " AND depends_on IN (SELECT key FROM cells WHERE status='failed')")

    def claim(self, spec_hash: str, worker: str) -> Cell | None:
        """Atomically take the next runnable cell of this study (its pre-training, if any, is done)."""
        with self.transaction() as db:
            self._release_dead(db)
            row = db.execute(
                "SELECT c.* FROM cells c JOIN study_cells s ON s.cell_key = c.key AND s.spec_hash = ?"
                " WHERE c.status = 'pending' AND (c.depends_on IS NULL OR"
                " (SELECT d.status FROM cells d WHERE d.key = c.depends_on) = 'done')"
                " ORDER BY c.seq LIMIT 1", (spec_hash,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE cells SET status='running', worker=?, host=?, pid=?, heartbeat=?,"
                       " attempts=attempts+1 WHERE key=?", (worker, self.host, os.getpid(), time.time(), row["key"]))
        return Cell(row["key"], row["kind"], row["depends_on"], json.loads(row["config"]), json.loads(row["labels"]),
                    row["run_dir"], row["seq"])

    def heartbeat(self, worker: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET heartbeat=? WHERE worker=? AND status='running'", (time.time(), worker))

    def finish(self, key: str, row: dict) -> bool:
        """Insert the result row (once: a second finisher of the same cell changes nothing) and mark it done."""
        values = [key if c == "cell_key" else row.get(c) for c in RESULT_COLUMNS]
        with self.transaction() as db:
            first = db.execute("SELECT 1 FROM results WHERE cell_key=?", (key,)).fetchone() is None
            if first:
                db.execute(f"INSERT INTO results ({', '.join(RESULT_COLUMNS)})"
                           f" VALUES ({', '.join('?' * len(values))})", values)
            db.execute("UPDATE cells SET status='done', error=NULL WHERE key=?", (key,))
        return first

    def fail(self, key: str, worker: str, error: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET status='failed', error=? WHERE key=? AND worker=? AND status='running'",
                       (error, key, worker))

    # --- queries --------------------------------------------------------------------------------------
    def counts(self, spec_hash: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, COUNT(*) FROM cells JOIN study_cells ON cell_key = key WHERE spec_hash=?"
            " GROUP BY status", (spec_hash,)).fetchall()
        return {status: n for status, n in rows}

    def failures(self, spec_hash: str) -> list[tuple[str, str]]:
        return [(r["key"], r["error"]) for r in self.conn.execute(
            "SELECT key, error FROM cells JOIN study_cells ON cell_key = key WHERE spec_hash=? AND status='failed'"
            " ORDER BY seq", (spec_hash,))]

    def result(self, key: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM results WHERE cell_key=?", (key,)).fetchone()
        return None if row is None else dict(row)

    def results(self, spec_hash: str, kind: str = "finetune") -> list[dict]:
        """The finished rows of one study's cells (whichever study first ran them)."""
        return [dict(r) for r in self.conn.execute(
            "SELECT r.* FROM results r JOIN study_cells s ON s.cell_key = r.cell_key JOIN cells c ON c.key = r.cell_key"
            " WHERE s.spec_hash=? AND r.kind=? ORDER BY c.seq", (spec_hash, kind))]

    def studies(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM studies ORDER BY created")]


class Heartbeat:
    """Keeps a worker's claimed cell alive from a background thread (its own connection)."""

    def __init__(self, path: Path, worker: str, every_s: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, worker, every_s), daemon=True)

    def _run(self, path: Path, worker: str, every_s: float) -> None:
        store = Store(path, create=False)
        try:
            while not self._stop.wait(every_s):
                store.heartbeat(worker)
        finally:
            store.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
