"""``medssl quickstart`` and ``medssl methods``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="pre-train, fine-tune at 1/10/100%% labels vs scratch, report")
    p.add_argument("--data", default="synthetic:lesions2d")
    p.add_argument("--out", default="medssl-quickstart")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=run_quickstart)

    p = sub.add_parser("methods", help="list pretext methods with family and dimensions")
    p.add_argument("--args", action="store_true", help="also list each method's hyperparameters and defaults")
    p.set_defaults(handler=run_methods)


def run_quickstart(args: argparse.Namespace) -> None:
    from medssl.quickstart import quickstart

    quickstart(data=args.data, out=args.out, seeds=args.seeds, overwrite=args.overwrite)


def run_methods(args: argparse.Namespace) -> None:
    from medssl.methods.registry import METHODS, list_methods, method_parameters

    methods = list_methods()
    width = max(len(name) for name, _, _ in methods) + 2
    print(f"{'method':<{width}}{'family':<13}dims")
    for name, family, dims in methods:
        print(f"{name:<{width}}{family:<13}{','.join(f'{d}D' for d in dims)}")
        if args.args:
            for key, (_, default) in method_parameters(METHODS[name]).items():
                print(f"{'':<{width}}  {key}={list(default) if isinstance(default, tuple) else default}")

