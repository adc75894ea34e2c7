"""Studies on a real PostgreSQL server: concurrent workers run each cell once, a SIGKILLed worker's cell is
reclaimed when its lease runs out, a server restart mid-study is survived, and the report equals SQLite's."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

from medssl.cli import main
from medssl.study import report
from medssl.study.runner import plan, register_study, run_study, work
from medssl.study.store import Cell, Store
from tests.study.conftest import tiny_spec, write_spec
from tests.study.postgres import PASSWORD_ROLE

FORK = multiprocessing.get_context("fork")  # workers start in milliseconds (nothing to import again)


def _fake_cell(cell: Cell, store: Store, cache: dict, *, progress: bool = False, pause_s: float = 0.05,
               hang_on: str | None = None) -> dict:
    """A stand-in for training: checks the encoder it depends on is recorded, then 'measures' a number."""
    if cell.depends_on is not None and store.result(cell.depends_on) is None:
        raise AssertionError(f"{cell.key} ran before its pre-training {cell.depends_on}")
    time.sleep(3600 if cell.key == hang_on else pause_s)
    auc = (cell.seq % 7) / 10
    return {"kind": cell.kind, "config": json.dumps(cell.config), "run_dir": cell.run_dir, "test_auc": auc,
            "metrics": json.dumps({"test": {"auc": auc, "per_class_recall": [auc, 1 - auc]}})}


def _worker(db: str, spec_hash: str, lease_s: float, pause_s: float, hang_on: str | None) -> None:
    def run_cell(cell: Cell, store: Store, cache: dict, progress: bool = False) -> dict:
        return _fake_cell(cell, store, cache, pause_s=pause_s, hang_on=hang_on)
    work(db, spec_hash, lease_s=lease_s, run_cell=run_cell)


def _start(db: str, spec_hash: str, n: int, *, lease_s: float = 120.0, pause_s: float = 0.05,
           hang_on: str | None = None) -> list[multiprocessing.Process]:
    procs = [FORK.Process(target=_worker, args=(db, spec_hash, lease_s, pause_s, hang_on)) for _ in range(n)]
    for proc in procs:
        proc.start()
    return procs


def _register(db: str, tmp_path, **spec_overrides: object) -> tuple[str, list[Cell]]:
    spec = tiny_spec(**spec_overrides)
    cells = plan(spec, tmp_path / "runs")
    store = Store(db)
    store.register(spec.hash, spec.name, spec.to_dict(), cells)
    store.close()
    return spec.hash, cells


def _join(procs: list[multiprocessing.Process], timeout: float = 120.0) -> None:
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"


def _state(db: str, spec_hash: str) -> tuple[list[dict], list[dict]]:
    store = Store(db, create=False)
    try:
        return store.cell_states(spec_hash), store.results(spec_hash) + store.results(spec_hash, kind="pretrain")
    finally:
        store.close()


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_four_workers_run_every_cell_exactly_once(pg_url, tmp_path):
    spec_hash, cells = _register(pg_url, tmp_path, seeds=4)  # 4 encoders, 16 fine-tunings
    _join(_start(pg_url, spec_hash, 4))
    states, rows = _state(pg_url, spec_hash)
    assert len(cells) == 20 and len(rows) == len(cells) == len({r["cell_key"] for r in rows})
    assert {s["status"] for s in states} == {"done"} and {s["attempts"] for s in states} == {1}
    assert len({r["worker"] for r in rows}) >= 2  # the work really was shared
    assert all(r["worker"].startswith(os.uname().nodename) for r in rows)  # worker ids name their host
    assert all(r["metric_values"]["test.auc"] == r["test_auc"] for r in rows)


def test_a_sigkilled_workers_cell_is_reclaimed_after_its_lease_and_the_study_completes(pg_url, tmp_path):
    spec_hash, cells = _register(pg_url, tmp_path)
    victim_cell = next(c.key for c in cells if c.kind == "finetune")
    [victim] = _start(pg_url, spec_hash, 1, lease_s=2.0, hang_on=victim_cell)

    def hangs() -> bool:
        return any(s["key"] == victim_cell and s["status"] == "running" for s in _state(pg_url, spec_hash)[0])
    _wait_for(hangs)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    _join(_start(pg_url, spec_hash, 1, lease_s=2.0))
    states, rows = _state(pg_url, spec_hash)
    assert len(rows) == len(cells) and {s["status"] for s in states} == {"done"}
    attempts = {s["key"]: s["attempts"] for s in states}
    assert attempts.pop(victim_cell) == 2 and set(attempts.values()) == {1}


def test_a_postgresql_restart_mid_study_is_survived(postgres_server, pg_url, tmp_path):
    spec_hash, cells = _register(pg_url, tmp_path, seeds=3)
    procs = _start(pg_url, spec_hash, 2, pause_s=0.3)
    _wait_for(lambda: len(_state(pg_url, spec_hash)[1]) >= 3)
    postgres_server.stop()  # fast shutdown: every open connection is cut
    time.sleep(1.5)
    postgres_server.start()
    assert len(_state(pg_url, spec_hash)[1]) < len(cells), "the restart must land mid-study"
    _join(procs, timeout=180)
    states, rows = _state(pg_url, spec_hash)
    assert len(rows) == len(cells) == len({r["cell_key"] for r in rows})
    assert {s["status"] for s in states} == {"done"}


SCORED = ("cell_key", "method", "seed", "label_fraction", "test_auc", "minority_class", "minority_recall",
          "n_labelled")


def test_the_report_of_a_postgresql_run_equals_the_sqlite_ones(pg_url, tmp_path):
    spec = tiny_spec(label_fractions=[1.0])  # 2 encoders, 4 fine-tunings, trained for real on each backend
    built, scored = {}, {}
    for name, db in (("sqlite", str(tmp_path / "results.db")), ("postgresql", pg_url)):
        outcome = run_study(spec, db, tmp_path / f"runs-{name}")
        assert not outcome.failures and outcome.counts == {"done": 6}
        built[name] = report.build(db)
        rows = report.load(db)[1]
        scored[name] = [([r[c] for c in SCORED], {k: v for k, v in r["metric_values"].items() if "duration" not in k})
                        for r in rows]
    assert len(scored["postgresql"]) == 4 and scored["postgresql"] == scored["sqlite"]  # same rows, same numbers
    sqlite_report, pg_report = built["sqlite"], built["postgresql"]
    assert pg_report.tables and pg_report.tables == sqlite_report.tables
    assert (pg_report.title, pg_report.findings, pg_report.notes) == \
        (sqlite_report.title, sqlite_report.findings, sqlite_report.notes)
    assert [caption for caption, _ in pg_report.figures] == [caption for caption, _ in sqlite_report.figures]


def test_bad_databases_are_refused_by_the_cli_in_one_line_with_nothing_written(postgres_server, pg_url, tmp_path,
                                                                               capsys):
    spec_path, runs = write_spec(tmp_path / "spec.yaml", label_fractions=[1.0], seeds=1), str(tmp_path / "runs")
    register_study(tiny_spec(seeds=1), pg_url, runs).close()  # the database holds another spec of study 'tiny'
    before = _state(pg_url, tiny_spec(seeds=1).hash)
    database = pg_url.rsplit("/", 1)[1]
    wrong_password = postgres_server.url(database, PASSWORD_ROLE, "not-the-password")
    unreachable = postgres_server.url(database).replace(f":{postgres_server.port}/", ":1/")
    launch = ["--runs", runs, "--executor", "local", "--workers", "1"]
    for argv, message in ((["run", str(spec_path), "--db", wrong_password, "--out", runs], "password authentication"),
                          (["launch", str(spec_path), "--db", unreachable, *launch], "Connection refused"),
                          (["launch", str(spec_path), "--db", pg_url, *launch], "with another spec"),
                          (["status", "--db", wrong_password], "password authentication")):
        assert main(["study", *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1 and "not-the-password" not in error
    assert _state(pg_url, tiny_spec(seeds=1).hash) == before
    store = Store(pg_url, create=False)
    assert [s["spec_hash"] for s in store.studies()] == [tiny_spec(seeds=1).hash]
    store.close()
