"""``medssl study run | launch | status | report | migrate | presets``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from medssl.cli.args import Parser
from medssl.errors import MedsslError

if TYPE_CHECKING:
    from medssl.study.spec import StudySpec

DB_HELP = "study database: a SQLite file (created if absent) or postgresql://user@host/dbname"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run grids of pre-training x fine-tuning runs into a study database, and report")
    study_sub = p.add_subparsers(dest="study_command", required=True, parser_class=Parser)

    run = study_sub.add_parser("run", help="run (or resume) a study")
    _spec_options(run)
    run.add_argument("--db", required=True, help=DB_HELP)
    run.add_argument("--out", help="directory for run dirs (default: next to a SQLite DB, <db name>-runs)")
    run.add_argument("--workers", type=int, default=1, help="worker processes claiming cells")
    run.add_argument("--progress", action="store_true", help="progress bars (single worker)")
    run.set_defaults(handler=run_study)

    launch = study_sub.add_parser("launch", help="start a study's workers as a SLURM job array or local processes")
    _spec_options(launch)
    launch.add_argument("--db", required=True,
                        help="postgresql://user@host/dbname (a SQLite file only for workers on one machine)")
    launch.add_argument("--runs", required=True, help="run root every worker sees (shared file system)")
    launch.add_argument("--executor", choices=["local", "slurm"], default="slurm")
    launch.add_argument("--workers", type=int, default=1, help="worker tasks (the job array's size)")
    launch.add_argument("--gpus-per-worker", type=int, default=0)
    launch.add_argument("--cpus-per-worker", type=int)
    launch.add_argument("--partition", help="SLURM partition")
    launch.add_argument("--time", default="24:00:00", help="time limit per worker: minutes, H:MM:SS, D-HH:MM:SS")
    launch.add_argument("--logs", help="submitit folder for job scripts and logs (default: RUNS/submitit)")
    launch.set_defaults(handler=run_launch)

    status = study_sub.add_parser("status", help="cells done / running / failed / waiting, per axis, and an ETA")
    status.add_argument("--db", required=True, help=DB_HELP)
    status.add_argument("--study", help="spec hash of the study (default: the latest)")
    status.add_argument("--watch", action="store_true", help="refresh until nothing is left to run")
    status.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes (--watch)")
    status.add_argument("--times", type=int, help="stop watching after this many refreshes")
    status.set_defaults(handler=run_status)

    migrate = study_sub.add_parser("migrate", help="copy studies between databases (e.g. SQLite -> PostgreSQL)")
    migrate.add_argument("--from", dest="source", required=True, help="source study database")
    migrate.add_argument("--to", dest="target", required=True, help="target study database (created if absent)")
    migrate.add_argument("--study", help="spec hash of the study to copy (default: every study)")
    migrate.set_defaults(handler=run_migrate)

    report = study_sub.add_parser("report", help="write the HTML (+ markdown) report of a study")
    report.add_argument("--db", required=True, help=DB_HELP)
    report.add_argument("--out", required=True, help="report.html path (report.md is written beside it)")
    report.add_argument("--study", help="spec hash of the study to report (default: the latest)")
    report.add_argument("--correction", choices=("holm", "bh"), default="holm",
                        help="multiplicity correction over all comparisons: holm (family-wise) or bh (FDR)")
    report.set_defaults(handler=run_report)

    presets = study_sub.add_parser("presets", help="list the preset studies, or print one as a spec to edit")
    presets.add_argument("--yaml", metavar="NAME", help="print preset NAME as a study spec YAML")
    presets.set_defaults(handler=run_presets)


def _spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="study spec YAML (or use --preset)")
    parser.add_argument("--preset", help="a named study: see 'medssl study presets'")
    parser.add_argument("--data", action="append", help="dataset spec (repeatable); replaces the spec's datasets")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1), replacing the spec's")


def _spec(args: argparse.Namespace) -> StudySpec:
    from medssl.study.presets import preset
    from medssl.study.spec import load_spec

    if (args.spec is None) == (args.preset is None):
        raise MedsslError(f"study {args.study_command} needs exactly one of SPEC.yaml or --preset NAME")
    if args.seeds is not None and args.seeds < 1:
        raise MedsslError(f"--seeds must be >= 1, got {args.seeds}")
    return preset(args.preset, args.data, args.seeds) if args.preset else load_spec(args.spec, args.data, args.seeds)


def run_study(args: argparse.Namespace) -> None:
    from medssl.study.runner import run_study as run
    from medssl.study.store import database_name, is_url

    if args.out is None and is_url(args.db):
        raise MedsslError("--out DIR is needed with a database URL (run dirs go next to a SQLite file by default)")
    spec = _spec(args)
    db = args.db if is_url(args.db) else Path(args.db)
    out = Path(args.out) if args.out else db.with_name(f"{db.stem}-runs")
    outcome = run(spec, db, out, workers=args.workers, progress=args.progress)
    done, total = outcome.counts.get("done", 0), sum(outcome.counts.values())
    print(f"study {spec.name} ({outcome.spec_hash}): {done}/{total} cells done in {outcome.minutes:.1f} min;"
          f" results in {database_name(args.db)}")
    if outcome.failures:
        key, error = outcome.failures[0]
        raise MedsslError(f"{len(outcome.failures)} cell(s) failed; first {key}: {error}")
    if done < total:
        raise MedsslError(f"{total - done} cell(s) unfinished (a worker died?); run the same command again to resume")


def run_launch(args: argparse.Namespace) -> None:
    from medssl.study.launch import Resources, launch, parse_time
    from medssl.study.store import database_name

    resources = Resources(workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                          cpus_per_worker=args.cpus_per_worker, partition=args.partition,
                          time_min=parse_time(args.time))
    launched = launch(_spec(args), args.db, args.runs, executor=args.executor, resources=resources,
                      logs=args.logs)
    done, total = launched.counts.get("done", 0), sum(launched.counts.values())
    if args.executor == "local":
        print(f"{done}/{total} cells done")
        if done < total:
            raise MedsslError(f"{total - done} cell(s) not done; see: medssl study status"
                              f" --db {database_name(args.db)}")
    elif launched.jobs:
        print(f"follow it with: medssl study status --db {database_name(args.db)} --watch")


def run_status(args: argparse.Namespace) -> None:
    from medssl.study.status import show

    _check_db_exists(args.db)
    show(args.db, args.study, watch=args.watch, interval_s=args.interval, times=args.times)


def run_migrate(args: argparse.Namespace) -> None:
    from medssl.study.migrate import migrate
    from medssl.study.store import database_name

    _check_db_exists(args.source)
    copied = migrate(args.source, args.target, study=args.study)
    rows = ", ".join(f"{n} {table}" for table, n in copied.rows.items())
    print(f"copied {len(copied.studies)} study(ies) ({', '.join(copied.studies)}) to {database_name(args.target)}:"
          f" {rows}")


def _check_db_exists(db: str) -> None:
    from medssl.study.store import is_url

    if not is_url(db) and not Path(db).is_file():
        raise MedsslError(f"study database not found: {db}")


def run_report(args: argparse.Namespace) -> None:
    from medssl.study.report import write_report

    _check_db_exists(args.db)
    report = write_report(args.db, args.out, study=args.study, correction=args.correction)
    print(f"{report.title}: {args.out} and {Path(args.out).with_suffix('.md')}")
    for line in report.answer:
        print(f"- {line}")


def run_presets(args: argparse.Namespace) -> None:
    import yaml

    from medssl.study.axes import get_axis
    from medssl.study.presets import PRESETS, preset

    if args.yaml:
        print(yaml.safe_dump(preset(args.yaml).to_dict(), sort_keys=False), end="")
        return
    for name in PRESETS:
        spec = preset(name)
        cells = spec.cell_count() // len(spec.datasets)
        line = f"{name:<16}{cells:>5} {spec.task} cells per dataset: methods {','.join(spec.methods)}"
        if get_axis("labels").applies(spec.study_task.config_fields()):
            line += "; " + (f"labelled images {','.join(map(str, spec.label_counts))}" if spec.label_counts else
                            f"fractions {','.join(f'{f:g}' for f in spec.label_fractions)}")
        print(line)
