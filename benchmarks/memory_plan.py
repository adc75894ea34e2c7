"""Does the memory plan hold? Pre-trains with ``medssl.api.pretrain`` (one or a few optimizer steps) and compares
the plan's estimate for one micro-batch step with the peak resident memory the training then reached above
the process's resident memory when the plan was made. Prints one JSON line.

    python benchmarks/memory_plan.py --data ../shared/data/adrenalmnist3d.npz --method spark \
        --batch-size 128 --memory-limit 4 --max-steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time

import medssl.api as api
from medssl.config import PretrainConfig


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", default="spark")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--memory-limit", type=float, help="GB (default: what the machine has free)")
    parser.add_argument("--max-steps", type=int, default=1)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()

    seen: dict = {}
    plan_memory = api.plan_memory

    def recording_plan(*a, **k):
        seen["rss_at_plan"] = rss_bytes()
        started = time.perf_counter()
        seen["plan"] = plan_memory(*a, **k)
        seen["plan_s"] = time.perf_counter() - started
        return seen["plan"]

    api.plan_memory = recording_plan
    with tempfile.TemporaryDirectory() as out:
        config = PretrainConfig(data=args.data, out=out, method=args.method, batch_size=args.batch_size,
                                backbone=args.backbone, width=args.width, epochs=1, max_steps=args.max_steps,
                                memory_limit_gb=args.memory_limit, accelerator="cpu")
        started = time.perf_counter()
        api.pretrain(config, progress=False)
        duration = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plan = seen["plan"]
    growth = peak - seen["rss_at_plan"]
    gib = 2**30
    print(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)", "threads": os.environ.get("OMP_NUM_THREADS"),
        "data": args.data, "method": args.method, "backbone": f"{args.backbone} x{args.width}",
        "batch_size": args.batch_size, "micro_batch": plan.micro_batch,
        "accumulate_grad_batches": plan.accumulate_grad_batches, "memory_source": plan.source,
        "budget_gib": round(plan.available_bytes / gib, 3) if plan.available_bytes else None,
        "estimate_gib": round(plan.estimate_bytes / gib, 3) if plan.estimate_bytes else None,
        "rss_at_plan_gib": round(seen["rss_at_plan"] / gib, 3), "peak_rss_gib": round(peak / gib, 3),
        "growth_gib": round(growth / gib, 3),
        "estimate_over_growth": round(plan.estimate_bytes / growth, 3) if plan.estimate_bytes else None,
        "plan_s": round(seen["plan_s"], 1), "run_s": round(duration, 1), "max_steps": args.max_steps,
    }))


if __name__ == "__main__":
    main()
