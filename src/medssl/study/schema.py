"""The study database's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are epoch seconds (``DOUBLE PRECISION``: PostgreSQL's ``REAL`` is single precision and would change the
numbers a report reads back). Columns added to ``results`` or ``cells`` after a release are nullable, so a
database written by that release gains them on open and its old rows stay valid.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = "1"
MARKER = "medssl_study_db"

metadata = sa.MetaData()

meta = sa.Table("meta", metadata,
                sa.Column("key", sa.Text, primary_key=True),
                sa.Column("value", sa.Text, nullable=False))

studies = sa.Table("studies", metadata,
                   sa.Column("spec_hash", sa.Text, primary_key=True),
                   sa.Column("name", sa.Text, nullable=False),
                   sa.Column("spec", sa.Text, nullable=False),
                   sa.Column("created", sa.Double, nullable=False))

cells = sa.Table("cells", metadata,
                 sa.Column("key", sa.Text, primary_key=True),
                 sa.Column("kind", sa.Text, nullable=False),
                 sa.Column("depends_on", sa.Text),
                 sa.Column("config", sa.Text, nullable=False),
                 sa.Column("labels", sa.Text, nullable=False),
                 sa.Column("run_dir", sa.Text, nullable=False),
                 sa.Column("seq", sa.Integer, nullable=False),
                 sa.Column("status", sa.Text, nullable=False, server_default="pending"),
                 sa.Column("worker", sa.Text),
                 sa.Column("host", sa.Text),
                 sa.Column("pid", sa.Integer),
                 sa.Column("heartbeat", sa.Double),
                 sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
                 sa.Column("error", sa.Text),
                 sa.Column("claimed", sa.Double))  # when its current worker took it (study status: for how long)

study_cells = sa.Table("study_cells", metadata,
                       sa.Column("spec_hash", sa.Text, primary_key=True),
                       sa.Column("cell_key", sa.Text, primary_key=True))

results = sa.Table("results", metadata,
                   sa.Column("cell_key", sa.Text, primary_key=True),
                   sa.Column("spec_hash", sa.Text, nullable=False),
                   sa.Column("kind", sa.Text, nullable=False),
                   sa.Column("dataset", sa.Text),
                   sa.Column("upstream", sa.Text),
                   sa.Column("method", sa.Text),
                   sa.Column("backbone", sa.Text),
                   sa.Column("width", sa.Double),
                   sa.Column("label_fraction", sa.Double),
                   sa.Column("imbalance_ratio", sa.Double),
                   sa.Column("policy", sa.Text),
                   sa.Column("seed", sa.Integer),
                   sa.Column("test_auc", sa.Double),
                   sa.Column("minority_class", sa.Integer),
                   sa.Column("minority_recall", sa.Double),
                   sa.Column("n_labelled", sa.Integer),
                   sa.Column("config", sa.Text, nullable=False),
                   sa.Column("metrics", sa.Text, nullable=False),
                   sa.Column("run_dir", sa.Text, nullable=False),
                   sa.Column("duration_s", sa.Double),
                   sa.Column("started_at", sa.Double),
                   sa.Column("finished_at", sa.Double),
                   sa.Column("worker", sa.Text),
                   sa.Column("medssl_version", sa.Text),
                   sa.Column("task", sa.Text),  # added columns from here on (nullable)
                   sa.Column("label_count", sa.Integer),
                   sa.Column("test_dice", sa.Double),
                   sa.Column("predictions", sa.Text),  # the run's predictions.csv (per-sample probabilities)
                   sa.Column("minority_recall_thresholded", sa.Double))

# Every scalar of a result's metrics JSON (dotted names: ``test.auc``, ``test.per_class_recall.1``), written in
# the result's transaction: any task's metrics are queryable without a schema change.
metric_values = sa.Table("metric_values", metadata,
                         sa.Column("spec_hash", sa.Text, nullable=False),
                         sa.Column("cell_key", sa.Text, primary_key=True),
                         sa.Column("name", sa.Text, primary_key=True),
                         sa.Column("value", sa.Double))

RESULT_COLUMNS = tuple(c.name for c in results.columns)
FINAL_TABLES = ("results", "metric_values")  # rows inserted once, never rewritten or deleted


def final_row_triggers(dialect: str) -> set[str]:
    if dialect == "sqlite":
        return {f"{table}_are_final_{op}" for table in FINAL_TABLES for op in ("update", "delete")}
    return {f"{table}_are_final" for table in FINAL_TABLES}


def final_rows_ddl(dialect: str) -> list[str]:
    """Triggers that make the rows of FINAL_TABLES immutable (the database refuses, whoever asks)."""
    if dialect == "sqlite":
        return [f"CREATE TRIGGER IF NOT EXISTS {table}_are_final_{op.lower()} BEFORE {op} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, 'finished results are never {verb}'); END"
                for table in FINAL_TABLES for op, verb in (("UPDATE", "rewritten"), ("DELETE", "deleted"))]
    function = ("CREATE OR REPLACE FUNCTION medssl_rows_are_final() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION USING MESSAGE = 'finished results are never '"
                " || CASE TG_OP WHEN 'UPDATE' THEN 'rewritten' ELSE 'deleted' END; END $$")
    triggers = [statement for table in FINAL_TABLES for statement in (
        f"DROP TRIGGER IF EXISTS {table}_are_final ON {table}",
        f"CREATE TRIGGER {table}_are_final BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW"
        " EXECUTE FUNCTION medssl_rows_are_final()")]
    return [function, *triggers]


def flatten_metrics(metrics: object, prefix: str = "") -> dict[str, float | None]:
    """The numbers of a metrics dict under dotted names; NaN is stored as NULL (SQLite cannot hold it)."""
    if isinstance(metrics, dict):
        items = ((str(k), v) for k, v in metrics.items())
    elif isinstance(metrics, list | tuple):
        items = ((str(i), v) for i, v in enumerate(metrics))
    elif isinstance(metrics, bool | int | float):
        value = float(metrics)
        return {prefix: None if value != value else value}
    else:
        return {}  # strings and nulls are not measurements
    flat: dict[str, float | None] = {}
    for name, value in items:
        flat.update(flatten_metrics(value, f"{prefix}.{name}" if prefix else name))
    return flat
