"""``medssl`` command line: a thin shell over ``medssl.api``. User errors print one line, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medssl.errors import MedsslError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise MedsslError(f"{self.prog}: {message}")


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be LOW,HIGH (e.g. -1000,400), got '{text}'") from None
    return low, high


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _common(p: argparse.ArgumentParser, batch_size: int) -> None:
    p.add_argument("--data", required=True, help="npz file, image folder, medmnist:NAME[@SIZE] or synthetic:lesions2d")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="resnet18", help="resnet10 | resnet18 | resnet34 | resnet50")
    p.add_argument("--width", type=float, default=1.0, help="channel width factor (0.25-0.5 for CPU)")
    p.add_argument("--size", type=int, help="resize image-folder data to SIZE per axis")
    p.add_argument("--window", type=_window, help="CT intensity window LOW,HIGH for image folders")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--precision", default="32-true", help="32-true | 16-mixed | bf16-mixed")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medssl", description="Self-supervised pre-training for 2D/3D medical images.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("pretrain", help="pre-train an encoder with a pretext task")
    _common(p, batch_size=128)
    p.add_argument("--method", default="simclr", help="method name, or several joined by '+'")
    p.add_argument("--weights", type=_floats, help="loss weights for combined methods, e.g. 1,1,0.5")
    p.add_argument("--pretrain-splits", default="train",
                   help="comma-separated splits whose images form the unlabeled pool (default: train)")

    p = sub.add_parser("finetune", help="fine-tune a classifier from a pre-trained run or from scratch")
    _common(p, batch_size=64)
    p.add_argument("--checkpoint", required=True, help="pre-training run directory, or 'scratch'")
    p.add_argument("--label-fraction", type=float, default=1.0)
    p.add_argument("--imbalance-ratio", type=float, help="subsample the minority class to 1:RATIO first")
    p.add_argument("--linear-probe", action="store_true", help="freeze the encoder, train only the head")
    p.add_argument("--augment", default="light", help="light | none")

    p = sub.add_parser("quickstart", help="pre-train, fine-tune at 1/10/100%% labels vs scratch, report")
    p.add_argument("--data", default="synthetic:lesions2d")
    p.add_argument("--out", default="medssl-quickstart")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--overwrite", action="store_true")

    sub.add_parser("methods", help="list pretext methods with family and dimensions")
    p = sub.add_parser("data", help="data utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    info = data_sub.add_parser("info", help="describe a data spec")
    info.add_argument("spec")
    info.add_argument("--size", type=int)
    info.add_argument("--window", type=_window)
    return parser


def _run(args: argparse.Namespace) -> None:
    from medssl import api
    from medssl.config import FinetuneConfig, PretrainConfig

    common = {
        "data": getattr(args, "data", None), "out": getattr(args, "out", None), "seed": getattr(args, "seed", 0),
    }
    if args.command in ("pretrain", "finetune"):
        common.update(
            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, size=args.size,
            window=args.window, accelerator=args.accelerator, devices=args.devices, precision=args.precision,
            num_workers=args.num_workers, overwrite=args.overwrite, backbone=args.backbone, width=args.width,
        )
    if args.command == "pretrain":
        config = PretrainConfig(**common, method=args.method, weights=args.weights, epochs=args.epochs or 10,
                                pretrain_splits=[s.strip() for s in args.pretrain_splits.split(",") if s.strip()])
        result = api.pretrain(config, progress=not args.no_progress)
        print(f"pre-trained encoder written to {result.run_dir / 'encoder.pt'}")
    elif args.command == "finetune":
        config = FinetuneConfig(**common, checkpoint=args.checkpoint, label_fraction=args.label_fraction,
                                imbalance_ratio=args.imbalance_ratio, linear_probe=args.linear_probe,
                                augment=args.augment, epochs=args.epochs or 20)
        result = api.finetune(config, progress=not args.no_progress)
        test = result.metrics["test"]
        recall = ", ".join(f"{r:.3f}" for r in test["per_class_recall"])
        print(f"test AUC {test['auc']:.4f}  acc {test['acc']:.4f}  balanced acc {test['balanced_acc']:.4f}"
              f"  per-class recall [{recall}]  ({result.run_dir / 'metrics.json'})")
    elif args.command == "quickstart":
        from medssl.quickstart import quickstart

        quickstart(data=args.data, out=args.out, seeds=args.seeds, overwrite=args.overwrite)
    elif args.command == "methods":
        from medssl.methods.registry import list_methods

        methods = list_methods()
        width = max(len(name) for name, _, _ in methods) + 2
        print(f"{'method':<{width}}{'family':<13}dims")
        for name, family, dims in methods:
            print(f"{name:<{width}}{family:<13}{','.join(f'{d}D' for d in dims)}")
    elif args.command == "data":
        from medssl.data.sources import describe, load_data

        print(describe(load_data(args.spec, size=args.size, window=args.window)))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        _run(build_parser().parse_args(argv))
    except MedsslError as err:
        print(f"medssl: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # Lightning reports impossible device requests (e.g. --accelerator gpu on a CPU machine) this way
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        if not isinstance(err, MisconfigurationException):
            raise
        print(f"medssl: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
