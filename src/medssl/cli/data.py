"""``medssl data info`` and ``medssl data prepare``."""

from __future__ import annotations

import argparse

from medssl.cli.args import Parser, window


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="describe data sources, prepare a preprocessed cache")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    info = data_sub.add_parser("info", help="describe a data spec (counts, shapes, spacings, skipped files)")
    info.add_argument("spec")
    info.add_argument("--size", type=int)
    info.add_argument("--window", type=window)
    info.set_defaults(handler=run_data_info)


def run_data_info(args: argparse.Namespace) -> None:
    from medssl.data.info import describe_spec

    print(describe_spec(args.spec, size=args.size, window=args.window))
