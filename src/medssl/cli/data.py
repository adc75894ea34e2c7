"""``medssl data info`` and ``medssl data prepare``."""

from __future__ import annotations

import argparse

from medssl.cli.args import Parser, add_data_options, window


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="describe data sources, prepare a preprocessed cache")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    info = data_sub.add_parser("info", help="describe a data spec (counts, shapes, spacings, skipped files)")
    info.add_argument("spec")
    info.add_argument("--size", type=int)
    info.add_argument("--window", type=window)
    info.set_defaults(handler=run_data_info)

    prepare = data_sub.add_parser("prepare", help="decode, reorient, resample and normalise a source once into a"
                                  " cache folder that --data then reads without decoding")
    prepare.add_argument("spec", help="folder, glob, manifest .csv or MSD folder")
    prepare.add_argument("--out", required=True, help="cache folder (created; an interrupted one resumes)")
    add_data_options(prepare)
    prepare.add_argument("--crop-foreground", action="store_true", help="crop each volume to its foreground")
    prepare.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    prepare.add_argument("--overwrite", action="store_true", help="rebuild a cache made with other options")
    prepare.add_argument("--no-progress", action="store_true")
    prepare.set_defaults(handler=run_data_prepare)


def run_data_info(args: argparse.Namespace) -> None:
    from medssl.data.info import describe_spec

    print(describe_spec(args.spec, size=args.size, window=args.window))


def run_data_prepare(args: argparse.Namespace) -> None:
    import sys

    from medssl.data.cache import prepare
    from medssl.data.preprocess import Preprocessing

    pre = Preprocessing(spacing=args.spacing, intensity=args.intensity, crop_foreground=args.crop_foreground)
    manifest = prepare(args.spec, args.out, pre, workers=args.workers, overwrite=args.overwrite,
                       progress=not args.no_progress, log=lambda line: print(line, file=sys.stderr))
    print(f"{len(manifest['items'])} item(s) prepared in {args.out}, {len(manifest['skipped'])} skipped"
          f" (`medssl data info {args.out}` describes them)")
