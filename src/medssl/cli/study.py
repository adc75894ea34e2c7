"""``medssl study run``, ``medssl study report`` and ``medssl study presets``."""

from __future__ import annotations

import argparse
from pathlib import Path

from medssl.cli.args import Parser
from medssl.errors import MedsslError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run grids of pre-training x fine-tuning runs into a SQLite DB, and report")
    study_sub = p.add_subparsers(dest="study_command", required=True, parser_class=Parser)

    run = study_sub.add_parser("run", help="run (or resume) a study")
    run.add_argument("spec", nargs="?", help="study spec YAML (or use --preset)")
    run.add_argument("--preset", help="quick | label-fractions | imbalance | policies | segment-labels | full")
    run.add_argument("--data", action="append", help="dataset spec (repeatable); replaces the spec's datasets")
    run.add_argument("--db", required=True, help="SQLite results database (created if absent)")
    run.add_argument("--out", help="directory for run dirs (default: next to the DB, <db name>-runs)")
    run.add_argument("--workers", type=int, default=1, help="worker processes claiming cells")
    run.add_argument("--seeds", type=int, help="number of seeds (0..N-1), replacing the spec's")
    run.add_argument("--progress", action="store_true", help="progress bars (single worker)")
    run.set_defaults(handler=run_study)

    report = study_sub.add_parser("report", help="write the HTML (+ markdown) report of a study")
    report.add_argument("--db", required=True)
    report.add_argument("--out", required=True, help="report.html path (report.md is written beside it)")
    report.add_argument("--study", help="spec hash of the study to report (default: the latest)")
    report.add_argument("--correction", choices=("holm", "bh"), default="holm",
                        help="multiplicity correction over all comparisons: holm (family-wise) or bh (FDR)")
    report.set_defaults(handler=run_report)

    presets = study_sub.add_parser("presets", help="list the preset studies, or print one as a spec to edit")
    presets.add_argument("--yaml", metavar="NAME", help="print preset NAME as a study spec YAML")
    presets.set_defaults(handler=run_presets)


def run_study(args: argparse.Namespace) -> None:
    from medssl.study.presets import preset
    from medssl.study.runner import run_study as run
    from medssl.study.spec import load_spec

    if (args.spec is None) == (args.preset is None):
        raise MedsslError("study run needs exactly one of SPEC.yaml or --preset NAME")
    if args.seeds is not None and args.seeds < 1:
        raise MedsslError(f"--seeds must be >= 1, got {args.seeds}")
    spec = preset(args.preset, args.data, args.seeds) if args.preset else load_spec(args.spec, args.data, args.seeds)
    db = Path(args.db)
    out = Path(args.out) if args.out else db.with_name(f"{db.stem}-runs")
    outcome = run(spec, db, out, workers=args.workers, progress=args.progress)
    done, total = outcome.counts.get("done", 0), sum(outcome.counts.values())
    print(f"study {spec.name} ({outcome.spec_hash}): {done}/{total} cells done in {outcome.minutes:.1f} min;"
          f" results in {db}")
    if outcome.failures:
        key, error = outcome.failures[0]
        raise MedsslError(f"{len(outcome.failures)} cell(s) failed; first {key}: {error}")
    if done < total:
        raise MedsslError(f"{total - done} cell(s) unfinished (a worker died?); run the same command again to resume")


def run_report(args: argparse.Namespace) -> None:
    from medssl.study.report import write_report

    db = Path(args.db)
    if not db.is_file():
        raise MedsslError(f"study database not found: {db}")
    report = write_report(db, args.out, study=args.study, correction=args.correction)
    print(f"{report.title}: {args.out} and {Path(args.out).with_suffix('.md')}")
    for line in report.answer:
        print(f"- {line}")


def run_presets(args: argparse.Namespace) -> None:
    import yaml

    from medssl.study.presets import PRESETS, preset

    if args.yaml:
        print(yaml.safe_dump(preset(args.yaml).to_dict(), sort_keys=False), end="")
        return
    for name in PRESETS:
        spec = preset(name)
        cells = (len(spec.methods) * len(spec.backbones) * len(spec.label_levels) * len(spec.imbalance_ratios)
                 * len(spec.policies) * len(spec.seeds))
        labels = (f"labelled images {','.join(map(str, spec.label_counts))}" if spec.label_counts else
                  f"fractions {','.join(f'{f:g}' for f in spec.label_fractions)}")
        print(f"{name:<16}{cells:>5} {spec.task} cells per dataset: methods {','.join(spec.methods)}; {labels}")
