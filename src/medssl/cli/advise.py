"""``medssl advise``: profile a dataset, state the literature's priors for it, write a study spec testing them."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("advise", help="profile data, state what the literature predicts, write a study spec")
    p.add_argument("--data", required=True, help="data spec (npz, folder, medmnist:NAME, synthetic:...)")
    p.add_argument("--labels", type=int, help="labelled training images you expect to have (default: a ladder)")
    p.add_argument("--size", type=int, help="resize images to this size when loading")
    p.add_argument("--out", help="study spec YAML to write (default: advise-<data>.yaml)")
    p.set_defaults(handler=run_advise)


def run_advise(args: argparse.Namespace) -> None:
    from medssl.advise import advise, render, spec_yaml
    from medssl.data.sources import load_data
    from medssl.runio import write_text

    advice = advise(load_data(args.data, size=args.size), labels=args.labels, data_spec=args.data)
    out = Path(args.out or f"{advice.spec.name}.yaml")
    write_text(out, spec_yaml(advice))
    print(render(advice))
    print(f"Study spec: {out} ({len(advice.spec.seeds)} seeds). Run it: medssl study run {out} --db study.db")
