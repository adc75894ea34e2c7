"""Copy studies between study databases (e.g. a SQLite file onto a PostgreSQL server), row for row.

Every row of the chosen studies travels as stored: the study records, their cells (status, attempts, errors,
leases), the result rows and their metric values. The copy is one transaction on the target, and a target that
already holds any of the studies or cells is refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from medssl.errors import MedsslError
from medssl.study.schema import cells, metric_values, results, studies, study_cells
from medssl.study.store import Store

CHUNK = 500  # keys per IN (...) list


@dataclass
class Copied:
    studies: list[str]
    rows: dict[str, int]  # table -> rows copied


def _rows(conn: sa.Connection, table: sa.Table, column: sa.Column, values: list[str]) -> list[dict]:
    rows: list[dict] = []
    for start in range(0, len(values), CHUNK):
        query = sa.select(table).where(column.in_(values[start:start + CHUNK]))
        rows += [dict(r._mapping) for r in conn.execute(query)]
    return rows


def dump(store: Store, hashes: list[str]) -> dict[sa.Table, list[dict]]:
    """The rows of these studies, table by table (in insertion order: the parents first)."""
    def read(conn: sa.Connection) -> dict[sa.Table, list[dict]]:
        links = _rows(conn, study_cells, study_cells.c.spec_hash, hashes)
        keys = sorted({link["cell_key"] for link in links})
        return {studies: _rows(conn, studies, studies.c.spec_hash, hashes),
                cells: _rows(conn, cells, cells.c.key, keys),
                study_cells: links,
                results: _rows(conn, results, results.c.cell_key, keys),
                metric_values: _rows(conn, metric_values, metric_values.c.cell_key, keys)}
    return store.read(read)


def migrate(source: str | Path, target: str | Path, study: str | None = None) -> Copied:
    """Copy ``study`` (a spec hash; default: every study) from ``source`` into ``target``."""
    src = Store(source, create=False)
    try:
        held = [s["spec_hash"] for s in src.studies()]
        if study is not None and study not in held:
            raise MedsslError(f"no study {study} in {src.name}; it holds {', '.join(held) or 'none'}")
        hashes = [study] if study is not None else held
        if not hashes:
            raise MedsslError(f"{src.name} holds no study to copy")
        tables = dump(src, hashes)
    finally:
        src.close()
    dst = Store(target)
    try:
        def copy(conn: sa.Connection) -> None:
            clashes = _rows(conn, studies, studies.c.spec_hash, hashes)
            if clashes:
                raise MedsslError(f"{dst.name} already holds study {clashes[0]['spec_hash']}; nothing copied")
            keys = [row["key"] for row in tables[cells]]
            taken = _rows(conn, cells, cells.c.key, keys)
            if taken:
                raise MedsslError(f"{dst.name} already holds {len(taken)} of these cells (e.g. {taken[0]['key']});"
                                  " nothing copied")
            for table, rows in tables.items():
                if rows:
                    conn.execute(table.insert(), rows)
        dst.write(copy)
    finally:
        dst.close()
    return Copied(hashes, {table.name: len(rows) for table, rows in tables.items()})
