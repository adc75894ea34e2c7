"""``medssl`` command line: a thin shell over ``medssl.api``. User errors print one line, exit 2.

Each command group lives in its own module with ``register(subparsers)``; a parser's ``handler``
default runs the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medssl.cli import advise, anomaly, data, evaluate, export, info, study, train
from medssl.cli.args import Parser
from medssl.cli.logs import log_file_for, routed_logs, write_log
from medssl.errors import MedsslError

COMMAND_MODULES = (train, anomaly, evaluate, export, study, info, advise, data)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medssl", description="Self-supervised pre-training for 2D/3D medical images.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; third-party warnings go to its log file (``medssl.cli.logs``), not the terminal."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        with routed_logs() as log:
            try:
                args = build_parser().parse_args(argv)
                args.handler(args)
            finally:
                write_log(" ".join(argv), log.lines, log_file_for(getattr(args, "out", None)))
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
