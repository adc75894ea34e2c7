"""Atomic writes of figures (PNG) and arrays (.npz) through ``medssl.runio.write_bytes``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medssl.runio import write_bytes


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def write_png(path: Path, figure: Figure) -> None:
    """Render with the Agg canvas (no display, no global backend switch) and write atomically."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    write_bytes(path, buffer.getvalue())
