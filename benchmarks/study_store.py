"""Study-store overhead: how fast N worker processes claim and record cells (cells that take no time), on
SQLite and on PostgreSQL. The store's cost per cell is what this measures; real cells take minutes.

Prints one JSON line per (backend, workers): cells, seconds, cells/s, max attempts (must be 1).
PostgreSQL: --pg URL of a study database, or a temporary server (initdb + pg_ctl, as in the tests).
Usage:  python benchmarks/study_store.py [--cells 400] [--workers 1 4] [--pg postgresql://me@host/db]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from medssl.study.runner import work
from medssl.study.store import Cell, Store

ROOT = Path(__file__).resolve().parents[1]


def _instant(cell: Cell, store: Store, cache: dict, progress: bool = False) -> dict:
    return {"kind": cell.kind, "config": "{}", "run_dir": cell.run_dir, "test_auc": 0.5,
            "metrics": json.dumps({"test": {"auc": 0.5, "per_class_recall": [0.5, 0.5]}})}


def _worker(db: str, study: str) -> None:
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # the per-cell progress lines
        work(db, study, run_cell=_instant)


def measure(db: str, cells: int, workers: int) -> dict:
    study = f"bench-{time.time_ns()}"  # new cells every time, also in a reused database
    store = Store(db)
    store.register(study, study, {}, [Cell(f"{study}/{i}", "finetune", None, {"i": i}, {}, f"/r/{i}", i)
                                      for i in range(cells)])
    started = time.perf_counter()
    procs = [multiprocessing.get_context("fork").Process(target=_worker, args=(db, study)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    seconds = time.perf_counter() - started
    attempts = max(c["attempts"] for c in store.cell_states(study))
    done = store.counts(study).get("done", 0)
    store.close()
    return {"cells": done, "seconds": round(seconds, 2), "cells_per_s": round(done / seconds, 1),
            "max_attempts": attempts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pg", help="URL of a PostgreSQL study database (default: a temporary server)")
    args = parser.parse_args()
    server = None
    if args.pg is None:
        sys.path.insert(0, str(ROOT))
        from tests.study.postgres import PostgresServer, _bin_dir

        server = PostgresServer(_bin_dir())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers in args.workers:
                for backend in ("sqlite", "postgresql"):
                    db = (str(Path(tmp) / f"w{workers}.db") if backend == "sqlite" else
                          args.pg if args.pg else server.new_database())
                    result = measure(db, args.cells, workers)
                    print(json.dumps({"backend": backend, "workers": workers, **result}), flush=True)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
