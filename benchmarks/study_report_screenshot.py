"""Render a study report.html in headless Chromium and check the screenshot shows the plots.

    python benchmarks/study_report_screenshot.py REPORT.html [--png shot.png]

Exit 0 when the page rendered with plots: the screenshot is not blank and holds coloured plot pixels
(a text-only page is black on white); exit 1 otherwise; exit 3 when no Chromium is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 4000) -> None:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium found")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def plot_pixels(png: Path) -> tuple[float, int]:
    """(share of non-white pixels, number of strongly coloured pixels)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    non_white = float((rgb.min(axis=2) < 240).mean())
    coloured = int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())
    return non_white, coloured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--png", type=Path, default=Path("report-screenshot.png"))
    args = parser.parse_args()
    if find_browser() is None:
        print("no chromium installed (apt-get install chromium)", file=sys.stderr)
        return 3
    screenshot(args.html, args.png)
    non_white, coloured = plot_pixels(args.png)
    ok = non_white > 0.02 and coloured > 2000
    print(f"{args.png}: {non_white:.1%} non-white pixels, {coloured} coloured plot pixels -> "
          f"{'rendered' if ok else 'BLANK or no plots'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
