"""Running the CLI in a subprocess on this checkout's source, one thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import medssl

SOURCE = str(Path(medssl.__file__).resolve().parents[1])
TINY = ["--data", "synthetic:lesions2d@16?n=200", "--backbone", "resnet10", "--width", "0.25", "--batch-size", "32",
        "--accelerator", "cpu", "--no-progress"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([SOURCE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def spawn_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medssl.cli", *args], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medssl.cli", *args], env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)
