"""``medssl evaluate``, ``medssl embed`` and ``medssl retrieve``."""

from __future__ import annotations

import argparse
import math

from medssl.cli.args import window


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="pre-training run dir, fine-tuning run dir, or 'random' (random-init baseline)")
    p.add_argument("--data", required=True, help="npz file, image folder, medmnist:NAME[@SIZE] or synthetic:lesions2d")
    p.add_argument("--backbone", default="resnet18", help="backbone of a 'random' checkpoint")
    p.add_argument("--width", type=float, default=1.0, help="width factor of a 'random' checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, help="resize image-folder data to SIZE per axis")
    p.add_argument("--window", type=window, help="CT intensity window LOW,HIGH for image folders")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="kNN / linear-probe / fine-tuned evaluation, retrieval, robustness, "
                                        "calibration, embedding map")
    _add_model_options(p)
    p.add_argument("--protocol", required=True, help="knn | linear | finetune")
    p.add_argument("--out", required=True, help="results directory to create")
    p.add_argument("--k", type=int, default=20, help="neighbours for the kNN vote (and a retrieval cut-off)")
    p.add_argument("--knn-temperature", type=float, default=0.07)
    p.add_argument("--robustness", action="store_true", help="metrics under every corruption at severities 1-5")
    p.add_argument("--calibration", action="store_true", help="ECE, reliability diagram, temperature scaling")
    p.add_argument("--map", action="store_true", help="t-SNE map of the test features (embedding_map.png)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--bins", type=int, default=15, help="confidence bins for ECE")
    p.add_argument("--overwrite", action="store_true", help="replace a finished results dir in --out")
    p.set_defaults(handler=run_evaluate)

    p = sub.add_parser("embed", help="write frozen-encoder embeddings (+ labels, ids) of every split to an .npz")
    _add_model_options(p)
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(handler=run_embed)

    p = sub.add_parser("retrieve", help="the k training images nearest to a query image")
    _add_model_options(p)
    p.add_argument("--query", required=True, help="index into --split, or an image file")
    p.add_argument("--split", default="test", help="split a query index refers to (default: test)")
    p.add_argument("--k", type=int, default=5)
    p.set_defaults(handler=run_retrieve)


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def run_evaluate(args: argparse.Namespace) -> None:
    from medssl.evaluate.run import EvaluateConfig, evaluate

    config = EvaluateConfig(checkpoint=args.checkpoint, data=args.data, protocol=args.protocol, out=args.out,
                            k=args.k, knn_temperature=args.knn_temperature, robustness=args.robustness,
                            calibration=args.calibration, embedding_map=args.map, backbone=args.backbone,
                            width=args.width, seed=args.seed, batch_size=args.batch_size, bins=args.bins,
                            size=args.size, window=args.window, device=args.device, overwrite=args.overwrite)
    result = evaluate(config)
    m = result.metrics
    print(f"{m['protocol']} test AUC {_fmt(m['test']['auc'])}  acc {_fmt(m['test']['acc'])}  balanced acc "
          f"{_fmt(m['test']['balanced_acc'])}  (val AUC {_fmt(m['val']['auc'])})")
    r = m["retrieval"]
    print("retrieval " + "  ".join(f"{key} {_fmt(r[key])}" for key in r if key.startswith(("recall@", "map@"))))
    if "robustness" in m:
        table = m["robustness"]
        drops = "  ".join(f"{name} {_fmt(c['mean_auc_drop'])}" for name, c in table["corruptions"].items())
        print(f"robustness: mean AUC drop over severities 1-5: {drops}  (all {_fmt(table['mean_auc_drop'])})")
    if "calibration" in m:
        c = m["calibration"]
        print(f"calibration: test ECE {_fmt(c['before']['ece'])} -> {_fmt(c['after']['ece'])} after temperature "
              f"scaling (T = {c['temperature']:.3f}, fitted on val)")
    print(f"results in {result.out_dir}")


def run_embed(args: argparse.Namespace) -> None:
    from medssl.evaluate.run import embed

    emb = embed(args.checkpoint, args.data, args.out, backbone=args.backbone, width=args.width, seed=args.seed,
                device=args.device)
    sizes = ", ".join(f"{name} {len(e)}" for name, e in emb.items())
    dim = next(iter(emb.values())).features.shape[1]
    print(f"{dim}-d embeddings ({sizes}) written to {args.out}")


def run_retrieve(args: argparse.Namespace) -> None:
    from medssl.evaluate.run import retrieve

    hits = retrieve(args.checkpoint, args.data, args.query, k=args.k, split=args.split, backbone=args.backbone,
                    width=args.width, seed=args.seed, device=args.device)
    print("rank  train_index  label  class  similarity")
    for hit in hits:
        print(f"{hit['rank']:>4}  {hit['index']:>11}  {hit['label']:>5}  {hit['class']}  {hit['similarity']:.4f}")
