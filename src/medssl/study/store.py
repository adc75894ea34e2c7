"""The study database behind one interface: a SQLite file (the default) or PostgreSQL (``postgresql://...``).

Cells to run are claimed atomically with a lease: on SQLite inside ``BEGIN IMMEDIATE`` (one writer at a time),
on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` (claimers never wait on each other). A claimed cell whose
worker stopped heart-beating for ``lease_s`` (timestamps from the database's clock, so hosts need not agree on
the time) goes back to pending; on SQLite a same-host worker whose pid is gone loses it at once. Result rows and
their metric values are inserted once, in one transaction, and triggers forbid rewriting or deleting them.
Operations retry with backoff while the server is unreachable (a PostgreSQL restart mid-study is survived).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite

from medssl.errors import MedsslError
from medssl.study.schema import (
    MARKER,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    cells,
    final_row_triggers,
    final_rows_ddl,
    flatten_metrics,
    meta,
    metadata,
    metric_values,
    results,
    studies,
    study_cells,
)

__all__ = ["RESULT_COLUMNS", "SCHEMA_VERSION", "Cell", "Heartbeat", "Store", "check_readable", "database_name"]

T = TypeVar("T")
PG_SCHEMA_LOCK = 7_263_011  # advisory lock id: one process at a time creates or migrates the schema


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


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_url(db: str | Path) -> bool:
    return "://" in str(db)


def _url(db: str | Path) -> sa.URL:
    """The SQLAlchemy URL of ``db``: a file path (SQLite) or a PostgreSQL URL (driven by psycopg 3)."""
    if not is_url(db):
        return sa.URL.create("sqlite", database=str(db))
    try:
        url = sa.make_url(str(db))
    except exc.ArgumentError:
        raise MedsslError(f"not a database URL: {db}") from None
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database:
        return sa.URL.create("sqlite", database=url.database)
    raise MedsslError(f"unsupported study database {url.render_as_string(hide_password=True)}: "
                      "use a SQLite file path or postgresql://user@host/dbname")


def database_name(db: str | Path) -> str:
    """``db`` as shown to users (a URL's password hidden)."""
    return sa.make_url(str(db)).render_as_string(hide_password=True) if is_url(db) else str(db)


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
            marker = (conn.execute("SELECT value FROM meta WHERE key=?", (MARKER,)).fetchone()
                      if "meta" in tables else None)
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise MedsslError(f"{path}: not a readable SQLite study database ({err})") from None
    if tables and marker is None:
        raise MedsslError(f"{path}: a SQLite database but not a medssl study database")
    if marker is not None and marker[0] != SCHEMA_VERSION:
        raise MedsslError(f"{path}: study database schema {marker[0]}, this medssl reads {SCHEMA_VERSION}")


def _sqlite_engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(sa.URL.create("sqlite", database=str(path)), connect_args={"timeout": 120})

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: sqlite3.Connection, record: object) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # writers take the write lock up front: two claimers never both read a cell as pending
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("medssl_read") else "BEGIN IMMEDIATE")

    return engine


class Store:
    """One study database; ``db`` is a SQLite path or a ``postgresql://user@host/dbname`` URL."""

    def __init__(self, db: str | Path, *, create: bool = True, lease_s: float = 120.0,
                 retry_s: float = 300.0) -> None:
        self.db = db
        url = _url(db)
        self.name = database_name(db)
        self.dialect = url.get_backend_name()
        self.lease_s = lease_s
        self.retry_s = retry_s
        self.host = socket.gethostname()
        if self.dialect == "sqlite":
            path = Path(url.database)
            check_readable(path)
            if not path.exists() and not create:
                raise MedsslError(f"study database not found: {path}")
            self.engine = _sqlite_engine(path)
            self._insert = sqlite.insert
            self._now = sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Double)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2,
                                           connect_args={"connect_timeout": 10})
            self._insert = postgresql.insert
            self._now = sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Double)
        try:
            self._open(create)
        except exc.DBAPIError as err:  # unreachable, refused credentials, no such database
            self.engine.dispose()
            raise MedsslError(f"cannot open study database {self.name}: {_first_line(err)}") from None
        except BaseException:
            self.engine.dispose()
            raise

    # --- schema -----------------------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(medssl_read=True)
            tables = set(sa.inspect(conn).get_table_names())
            marker = conn.execute(sa.select(meta.c.value).where(meta.c.key == MARKER)).scalar() \
                if "meta" in tables else None
            complete = marker is not None and self._schema_complete(conn, tables)
        if tables and marker is None:
            raise MedsslError(f"{self.name}: a database with other tables, not a medssl study database")
        if marker is not None and marker != SCHEMA_VERSION:
            raise MedsslError(f"{self.name}: study database schema {marker}, this medssl reads {SCHEMA_VERSION}")
        if marker is None and not create:
            raise MedsslError(f"{self.name} holds no medssl study")
        if not complete:  # a new database, or one written by an older release (also when only reading it)
            self._migrate_schema()

    def _schema_complete(self, conn: sa.Connection, tables: set[str]) -> bool:
        if not set(metadata.tables) <= tables:
            return False
        inspector = sa.inspect(conn)
        for table in (cells, results):
            if not {c.name for c in table.columns} <= {c["name"] for c in inspector.get_columns(table.name)}:
                return False
        query = ("SELECT name FROM sqlite_master WHERE type = 'trigger'" if self.dialect == "sqlite" else
                 "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        return final_row_triggers(self.dialect) <= set(conn.exec_driver_sql(query).scalars())

    def _migrate_schema(self) -> None:
        """Create what is missing: tables, columns added since the database was written, triggers, marker."""
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_SCHEMA_LOCK})
            inspector = sa.inspect(conn)
            had_values = inspector.has_table(metric_values.name)
            metadata.create_all(conn, checkfirst=True)
            for table in (cells, results):
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        kind = column.type.compile(conn.dialect)
                        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
            for statement in final_rows_ddl(self.dialect):
                conn.exec_driver_sql(statement)
            conn.execute(self._insert(meta).values(key=MARKER, value=SCHEMA_VERSION).on_conflict_do_nothing())
            if not had_values:  # a database of an older release: its results' metric values, once
                for row in conn.execute(sa.select(results.c.cell_key, results.c.spec_hash, results.c.metrics)):
                    self._insert_values(conn, row.cell_key, row.spec_hash, row.metrics)

    def close(self) -> None:
        self.engine.dispose()

    # --- transactions, retried while the server is unreachable ------------------------------------------
    def _transient(self, err: exc.DBAPIError) -> bool:
        if self.dialect == "sqlite":
            return "locked" in str(err.orig) or "busy" in str(err.orig)
        if err.connection_invalidated:
            return True
        state = getattr(err.orig, "sqlstate", None)
        # no state: the server is not answering; 08: connection; 57P: shut down / starting; 40: deadlock
        return state is None or state.startswith(("08", "57P", "40"))

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (one transaction), again with backoff while the database is unreachable."""
        delay, deadline = 0.25, time.monotonic() + self.retry_s
        while True:
            try:
                return operation()
            except (exc.OperationalError, exc.InterfaceError) as err:
                if not self._transient(err) or time.monotonic() + delay > deadline:
                    raise
                print(f"study database {self.name}: {_first_line(err)}; retrying in {delay:.1f} s", file=sys.stderr)
                time.sleep(delay)
                delay = min(2 * delay, 10.0)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction (not retried: wrap the whole of it in ``retrying``)."""
        with self.engine.begin() as conn:
            yield conn

    def write(self, work: Callable[[sa.Connection], T]) -> T:
        """``work(connection)`` in one write transaction, retried while the database is unreachable."""
        def attempt() -> T:
            with self.transaction() as conn:
                return work(conn)
        return self.retrying(attempt)

    def read(self, work: Callable[[sa.Connection], T]) -> T:
        """``work(connection)`` reading (on SQLite without taking the write lock), retried likewise."""
        def attempt() -> T:
            with self.engine.connect() as conn:
                conn.execution_options(medssl_read=True)
                return work(conn)
        return self.retrying(attempt)

    def now(self) -> float:
        """The database's clock (epoch seconds): what leases and heartbeats are measured against."""
        return self.read(lambda conn: float(conn.execute(sa.select(self._now)).scalar_one()))

    # --- planning -------------------------------------------------------------------------------------
    def register(self, spec_hash: str, name: str, spec: dict, cell_list: list[Cell]) -> None:
        """Add the study and its cells (existing cells are kept as they are; failed ones are retried)."""
        def work(conn: sa.Connection) -> None:
            conn.execute(self._insert(studies).values(spec_hash=spec_hash, name=name,
                                                      spec=json.dumps(spec, sort_keys=True), created=time.time())
                         .on_conflict_do_nothing())
            if cell_list:
                conn.execute(self._insert(cells).on_conflict_do_nothing(), [
                    {"key": c.key, "kind": c.kind, "depends_on": c.depends_on,
                     "config": json.dumps(c.config, sort_keys=True), "labels": json.dumps(c.labels),
                     "run_dir": c.run_dir, "seq": c.seq} for c in cell_list])
                conn.execute(self._insert(study_cells).on_conflict_do_nothing(),
                             [{"spec_hash": spec_hash, "cell_key": c.key} for c in cell_list])
            conn.execute(cells.update().where(cells.c.status == "failed", cells.c.key.in_(self._keys(spec_hash)))
                         .values(status="pending", error=None))
        self.write(work)

    @staticmethod
    def _keys(spec_hash: str) -> sa.Select:
        return sa.select(study_cells.c.cell_key).where(study_cells.c.spec_hash == spec_hash)

    # --- claiming -------------------------------------------------------------------------------------
    def _release_dead(self, conn: sa.Connection) -> None:
        pending = {"status": "pending", "worker": None}
        running = cells.c.status == "running"
        conn.execute(cells.update().where(running, sa.or_(cells.c.heartbeat.is_(None),
                                                          cells.c.heartbeat < self._now - self.lease_s))
                     .values(**pending))
        if self.dialect == "sqlite":  # same host: a worker whose process is gone needs no lease to expire
            mine = conn.execute(sa.select(cells.c.key, cells.c.pid).where(running, cells.c.host == self.host))
            dead = [key for key, pid in mine if pid is None or not _pid_alive(pid)]
            if dead:
                conn.execute(cells.update().where(running, cells.c.key.in_(dead)).values(**pending))
        failed = sa.select(cells.c.key).where(cells.c.status == "failed").scalar_subquery()
        conn.execute(cells.update().where(cells.c.status == "pending", cells.c.depends_on.in_(failed))
                     .values(status="failed", error="its pre-training cell failed"))

    def claim(self, spec_hash: str, worker: str) -> Cell | None:
        """Atomically take the next runnable cell of this study (its pre-training, if any, is done)."""
        def work(conn: sa.Connection) -> Cell | None:
            self._release_dead(conn)
            c, d = cells.alias("c"), cells.alias("d")
            ready = sa.or_(c.c.depends_on.is_(None),
                           sa.exists().where(d.c.key == c.c.depends_on, d.c.status == "done"))
            row = conn.execute(
                sa.select(c).join(study_cells, sa.and_(study_cells.c.cell_key == c.c.key,
                                                       study_cells.c.spec_hash == spec_hash))
                .where(c.c.status == "pending", ready).order_by(c.c.seq).limit(1)
                .with_for_update(skip_locked=True, of=c)).first()
            if row is None:
                return None
            conn.execute(cells.update().where(cells.c.key == row.key).values(
                status="running", worker=worker, host=self.host, pid=os.getpid(), heartbeat=self._now,
                claimed=self._now, attempts=cells.c.attempts + 1))
            return Cell(row.key, row.kind, row.depends_on, json.loads(row.config), json.loads(row.labels),
                        row.run_dir, row.seq)
        return self.write(work)

    def heartbeat(self, worker: str, key: str) -> None:
        """Renew the lease of the cell ``worker`` runs (by key: a claim whose commit answer the connection lost,
        e.g. in a server restart, is never renewed and its lease runs out)."""
        self.write(lambda conn: conn.execute(
            cells.update().where(cells.c.key == key, cells.c.worker == worker, cells.c.status == "running")
            .values(heartbeat=self._now)))

    def _insert_values(self, conn: sa.Connection, key: str, spec_hash: str, metrics: str) -> None:
        try:
            flat = flatten_metrics(json.loads(metrics))
        except ValueError:
            flat = {}
        if flat:
            conn.execute(self._insert(metric_values).on_conflict_do_nothing(), [
                {"spec_hash": spec_hash, "cell_key": key, "name": name, "value": value}
                for name, value in flat.items()])

    def finish(self, key: str, row: dict) -> bool:
        """Insert the result row and its metric values (once: a second finisher of the same cell changes
        nothing) and mark the cell done. Returns whether this call inserted the row."""
        values = {c: row.get(c) for c in RESULT_COLUMNS} | {"cell_key": key}

        def work(conn: sa.Connection) -> bool:
            inserted = self._insert(results).values(values).on_conflict_do_nothing().returning(results.c.cell_key)
            first = conn.execute(inserted).first() is not None
            if first:
                self._insert_values(conn, key, values["spec_hash"], values["metrics"])
            conn.execute(cells.update().where(cells.c.key == key).values(status="done", error=None))
            return first
        return self.write(work)

    def fail(self, key: str, worker: str, error: str) -> None:
        self.write(lambda conn: conn.execute(
            cells.update().where(cells.c.key == key, cells.c.worker == worker, cells.c.status == "running")
            .values(status="failed", error=error)))

    # --- queries --------------------------------------------------------------------------------------
    def counts(self, spec_hash: str) -> dict[str, int]:
        query = (sa.select(cells.c.status, sa.func.count()).where(cells.c.key.in_(self._keys(spec_hash)))
                 .group_by(cells.c.status))
        return self.read(lambda conn: {status: n for status, n in conn.execute(query)})

    def failures(self, spec_hash: str) -> list[tuple[str, str]]:
        query = (sa.select(cells.c.key, cells.c.error)
                 .where(cells.c.key.in_(self._keys(spec_hash)), cells.c.status == "failed").order_by(cells.c.seq))
        return self.read(lambda conn: [(key, error) for key, error in conn.execute(query)])

    def cell_states(self, spec_hash: str) -> list[dict]:
        """Every cell of a study with its state (status, worker, host, attempts, error, claimed, heartbeat)."""
        query = sa.select(cells).where(cells.c.key.in_(self._keys(spec_hash))).order_by(cells.c.seq)
        return self.read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])

    def _with_values(self, conn: sa.Connection, rows: list[dict]) -> list[dict]:
        """Attach each row's ``metric_values`` ({dotted name: value})."""
        by_key = {row["cell_key"]: row for row in rows}
        for row in rows:
            row["metric_values"] = {}
        keys = list(by_key)
        for start in range(0, len(keys), 500):
            query = (sa.select(metric_values.c.cell_key, metric_values.c.name, metric_values.c.value)
                     .where(metric_values.c.cell_key.in_(keys[start:start + 500]))
                     .order_by(metric_values.c.cell_key, metric_values.c.name))
            for key, name, value in conn.execute(query):
                by_key[key]["metric_values"][name] = value
        return rows

    def result(self, key: str) -> dict | None:
        def work(conn: sa.Connection) -> dict | None:
            row = conn.execute(sa.select(results).where(results.c.cell_key == key)).first()
            return None if row is None else self._with_values(conn, [dict(row._mapping)])[0]
        return self.read(work)

    def results(self, spec_hash: str, kind: str = "finetune") -> list[dict]:
        """The finished rows of one study's cells (whichever study first ran them), with their metric values."""
        query = (sa.select(results).join(cells, cells.c.key == results.c.cell_key)
                 .where(results.c.cell_key.in_(self._keys(spec_hash)), results.c.kind == kind)
                 .order_by(cells.c.seq))
        return self.read(lambda conn: self._with_values(conn, [dict(r._mapping) for r in conn.execute(query)]))

    def studies(self) -> list[dict]:
        query = sa.select(studies).order_by(studies.c.created)
        return self.read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])

    def study(self, spec_hash: str | None = None) -> dict:
        """The record of study ``spec_hash`` (default: the latest registered)."""
        held = self.studies()
        if not held:
            raise MedsslError(f"{self.name} holds no study yet")
        chosen = held[-1] if spec_hash is None else next((s for s in held if s["spec_hash"] == spec_hash), None)
        if chosen is None:
            hashes = ", ".join(s["spec_hash"] for s in held)
            raise MedsslError(f"no study {spec_hash} in {self.name}; it holds {hashes}")
        return chosen


class Heartbeat:
    """Keeps a worker's claimed cell alive from a background thread (its own connection)."""

    def __init__(self, db: str | Path, worker: str, key: str, every_s: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(db, worker, key, every_s), daemon=True)

    def _run(self, db: str | Path, worker: str, key: str, every_s: float) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(every_s):
                try:
                    store = store or Store(db, create=False, retry_s=every_s)
                    store.heartbeat(worker, key)
                except (exc.SQLAlchemyError, MedsslError) as err:  # the next beat tries again; the lease
                    print(f"heartbeat of {worker} missed: {_first_line(err)}", file=sys.stderr)  # covers a few
        finally:
            if store is not None:
                store.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
