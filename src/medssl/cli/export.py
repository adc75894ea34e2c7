"""``medssl export``: a finished pre-training run as a model package (safetensors, config, model card, MONAI
bundle metadata)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a pre-training run as a shareable model package")
    p.add_argument("run", help="finished pre-training run directory")
    p.add_argument("--out", required=True, help="package directory to create")
    p.add_argument("--eval", action="append", default=[], metavar="RUN",
                   help="a finished fine-tuning run of this encoder whose test metrics go into the model card "
                        "(repeatable)")
    p.add_argument("--license", default="other", help="licence identifier for the model card, e.g. cc-by-4.0")
    p.add_argument("--name", help="model name in the card (default: the --out directory's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package in --out")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from medssl.methods.registry import resolved_method_args
    from medssl.models.package import export_package
    from medssl.runio import is_complete, read_yaml

    run = Path(args.run)
    hyperparameters = None
    if is_complete(run):
        config = read_yaml(run / "config.yaml")
        if config.get("method"):
            hyperparameters = resolved_method_args(config["method"], config.get("method_args") or {})
    out = export_package(run, args.out, hyperparameters=hyperparameters, evaluations=args.eval,
                         licence=args.license, name=args.name, overwrite=args.overwrite)
    print(f"model package written to {out}")
