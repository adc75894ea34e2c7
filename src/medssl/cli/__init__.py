"""``medssl`` command line: a thin shell over ``medssl.api``. User errors print one line, exit 2.

Each command group lives in its own module with ``register(subparsers)``; a parser's ``handler``
default runs the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medssl.cli import advise, evaluate, info, study, train
from medssl.cli.args import Parser
from medssl.errors import MedsslError

COMMAND_MODULES = (train, evaluate, study, info, advise)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medssl", description="Self-supervised pre-training for 2D/3D medical images.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.handler(args)
    except MedsslError as err:
        print(f"medssl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    return 0
