"""The README's real-corpus commands, run in full: ``data prepare`` of ../shared/data/dicom, then SimCLR, SparK
and Genesis pre-training from the cache (``--patch 64,64,32 --max-steps 50``, ResNet-10 x0.25, seed 0).

    python benchmarks/data_dicom_pretrain.py [--methods simclr,spark,genesis] [--max-steps 50] [--work DIR]

Runs the CLI exactly as the README writes it (from DIR, where ``../shared`` must reach the shared data) and
prints one JSON line per command: wall seconds, the run's steps, its final training loss and images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _cli(args: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medssl.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    return time.perf_counter() - start, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="simclr,spark,genesis")
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--work", help="working folder (default: a temp folder with ../shared linked)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp()) / "work"
    work.mkdir(parents=True, exist_ok=True)
    if not (work.parent / "shared").exists():
        (work.parent / "shared").symlink_to(SHARED)
    seconds, rc, last = _cli(["data", "prepare", "../shared/data/dicom", "--spacing", "1.5,1.5,3", "--intensity",
                              "ct:-1000,400", "--out", "cache", "--workers", "2"], work)
    print(json.dumps({"command": "data prepare", "seconds": round(seconds, 1), "rc": rc, "last_line": last}),
          flush=True)
    for method in args.methods.split(","):
        out = work / "runs" / f"dicom-{method}"
        seconds, rc, last = _cli(["pretrain", "--data", "cache", "--method", method, "--patch", "64,64,32",
                                  "--max-steps", str(args.max_steps), "--backbone", "resnet10", "--width", "0.25",
                                  "--out", str(out), "--overwrite"], work)
        record = {"command": f"pretrain {method}", "seconds": round(seconds, 1), "rc": rc}
        if rc == 0:
            metrics = json.loads((out / "metrics.json").read_text())
            config = yaml.safe_load((out / "config.yaml").read_text())
            record.update(steps=metrics["steps"], train=metrics["train"],
                          images_per_second=round(metrics["images_per_second"], 2),
                          batch_size=config.get("batch_size"), micro_batch=config.get("micro_batch"),
                          pool=config["data_summary"]["pool_images"])
        else:
            record["error"] = last
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
