"""Load an image folder described by ``labels.csv`` (PNG/JPG, DICOM, NIfTI) into an ``ImageData``."""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import LoadImage, Resize
from PIL import Image

from medssl.data.conventions import MINMAX, STORED, of_items
from medssl.data.dataset import SPLITS, ImageData, Split
from medssl.errors import MedsslError

IMAGE_KINDS = {".png": "PNG/JPG", ".jpg": "PNG/JPG", ".jpeg": "PNG/JPG", ".tif": "PNG/JPG", ".tiff": "PNG/JPG",
               ".gif": "PNG/JPG", ".bmp": "PNG/JPG", ".dcm": "DICOM", ".nii": "NIfTI", ".nii.gz": "NIfTI"}
# Palette/alpha/binary PNGs become plain grey or RGB so channel counts stay 1 or 3.
_PIL_CONVERT = {"1": "L", "LA": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


def _grey_or_rgb(img: Image.Image) -> Image.Image:
    return img.convert(_PIL_CONVERT[img.mode]) if img.mode in _PIL_CONVERT else img


def image_kind(path: Path) -> str | None:
    """The MONAI reader family for a file name, or None for an unsupported type."""
    name = path.name.lower()
    return next((k for suffix, k in IMAGE_KINDS.items() if name.endswith(suffix)), None)


def image_reader() -> Callable[[Path, str], np.ndarray]:
    """``load(path, kind)``: a channel-first array read by the one MONAI reader for that kind."""
    with warnings.catch_warnings():  # LoadImage builds every MONAI reader; the GPU DICOM one warns on CPU
        warnings.filterwarnings("ignore", message=".*nvImageCodec")
        load = LoadImage(image_only=True, ensure_channel_first=True, dtype=None)
    # Keep numpy's (rows, cols) order for PNG/JPG/DICOM instead of MONAI's transposed default.
    readers = {
        "PNG/JPG": PILReader(converter=_grey_or_rgb, reverse_indexing=False),
        "DICOM": PydicomReader(swap_ij=False),
        "NIfTI": NibabelReader(),
    }
    # Passing the reader per call stops LoadImage from falling back to other readers on failure.
    return lambda path, kind: np.asarray(load(str(path), reader=readers[kind]))


def _read_csv(root: Path) -> tuple[list[dict[str, str]], list[int]]:
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise MedsslError(f"{csv_path} not found: an image folder needs a labels.csv with columns path,label")
    try:
        reader = csv.DictReader(csv_path.read_text(encoding="utf-8-sig").splitlines())
        columns = [c.strip() for c in reader.fieldnames or []]
    except UnicodeDecodeError as e:
        raise MedsslError(f"{csv_path} is not UTF-8 text") from e
    if not columns:
        raise MedsslError(f"{csv_path} is empty: expected a header line path,label")
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise MedsslError(f"{csv_path}: missing column(s) {', '.join(missing)} (has {columns})")
    reader.fieldnames = columns
    rows, lines = [], []
    for row in reader:
        rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
        lines.append(reader.line_num)
    if not rows:
        raise MedsslError(f"{csv_path}: no rows after the header")
    return rows, lines


def _resolve(root: Path, rel: str, where: str) -> Path:
    if not rel:
        raise MedsslError(f"{where}: empty path")
    if "\x00" in rel:
        raise MedsslError(f"{where}: path {rel!r} contains a NUL byte")
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")):
        raise MedsslError(f"{where}: path {rel!r} must be relative to the folder")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise MedsslError(f"{where}: path {rel!r} points outside {root}")
    if not path.is_file():
        raise MedsslError(f"{where}: image file {rel!r} not found")
    return path


def to_unit255(img: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Float image with intensities in [0, 255]."""
    if window is not None:
        lo, hi = window
        return (np.clip(img.astype(np.float64), lo, hi) - lo) * (255.0 / (hi - lo))
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    img = img.astype(np.float64)
    lo, hi = img.min(), img.max()
    return (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)


def read_image(path: Path, rel: str, load: Callable[[Path, str], np.ndarray]) -> np.ndarray:
    """A channel-first (C, *spatial) array as stored, checked: readable, 2D or 3D, finite."""
    kind = image_kind(path)
    if kind is None:
        raise MedsslError(f"{rel}: unsupported file type (use {', '.join(IMAGE_KINDS)})")
    try:
        with warnings.catch_warnings():  # MONAI wraps PIL's read-only arrays; harmless, but it reaches stderr
            warnings.filterwarnings("ignore", message=".*NumPy array is not writable")
            img = load(path, kind)
    except Exception as e:  # any reader failure on a user's file is a user error, not a crash
        raise MedsslError(f"{rel}: cannot read as {kind} (corrupt file or wrong format)") from e
    if img.ndim == 4 and img.shape[-1] == 1:  # a single-slice volume is a 2D image
        img = img[..., 0]
    if img.ndim not in (3, 4):
        raise MedsslError(f"{rel}: expected a 2D or 3D image, got array of shape {img.shape}")
    if not np.isfinite(img).all():
        raise MedsslError(f"{rel}: image contains NaN or Inf pixels")
    return img


def load_image(path: Path, rel: str, load: Callable[[Path, str], np.ndarray], size: int | None,
               window: tuple[float, float] | None, *, conventions: list[str] | None = None) -> np.ndarray:
    """``read_image``, scaled to uint8 (optionally through a CT window) and resized to ``size``; the intensity
    convention applied (``data.conventions``) is appended to ``conventions`` when given."""
    img = read_image(path, rel, load)
    if conventions is not None:
        conventions.append(f"range:{window[0]:g},{window[1]:g}" if window is not None
                           else STORED if img.dtype == np.uint8 else MINMAX)
    out = to_unit255(img, window)
    if size is not None:
        mode = "area" if img.ndim == 3 else "trilinear"
        out = np.asarray(Resize((size,) * (img.ndim - 1), mode=mode)(out.astype(np.float32)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _shape_error(rel: str, shape: tuple[int, ...], first: str, ref: tuple[int, ...]) -> None:
    if len(shape) != len(ref):
        raise MedsslError(f"{rel} is {len(shape) - 1}D but {first} is {len(ref) - 1}D; all images must agree")
    if shape[0] != ref[0]:
        raise MedsslError(f"{rel} has {shape[0]} channel(s) but {first} has {ref[0]}")
    raise MedsslError(f"{rel}: shape {shape[1:]} differs from {first} {ref[1:]}; pass size= to resize")


def parse_labels(values: list[str], lines: list[int], where: str = "labels.csv") -> tuple[np.ndarray, list[str]]:
    for v, line in zip(values, lines, strict=True):
        if not v:
            raise MedsslError(f"{where} line {line}: empty label")
    names = sorted(set(values))
    try:
        ints = sorted({int(v) for v in values})
    except ValueError:
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[v] for v in values], dtype=np.int64), names
    if ints != list(range(len(ints))):
        raise MedsslError(f"{where}: integer labels must be 0..{len(ints) - 1}, got {ints}")
    return np.array([int(v) for v in values], dtype=np.int64), [str(i) for i in ints]


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)  # so float noise (30 * 0.1 = 3.0000000000000004) does not round up


def _stratified(labels: np.ndarray, rng: np.random.Generator, val: float, test: float) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per unit, stratified by label, totals ceil(n * fraction)."""
    out = np.zeros(len(labels), dtype=np.int64)
    seen = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        # Cumulative rounding over classes keeps overall totals near the requested fractions.
        n_test = _ceil((seen + len(idx)) * test) - _ceil(seen * test)
        n_val = _ceil((seen + len(idx)) * val) - _ceil(seen * val)
        n_test = min(n_test, len(idx) - 1)  # train keeps at least one of every class
        n_val = min(n_val, len(idx) - 1 - n_test)
        out[idx[:n_test]] = 2
        out[idx[n_test:n_test + n_val]] = 1
        seen += len(idx)
    return out


def split_ids(rows: list[dict[str, str]], lines: list[int], labels: np.ndarray, seed: int,
               val: float, test: float) -> np.ndarray:
    if "split" in rows[0]:
        for row, line in zip(rows, lines, strict=True):
            if row["split"] not in SPLITS:
                raise MedsslError(f"labels.csv line {line}: split {row['split']!r} is not train/val/test")
        return np.array([SPLITS.index(row["split"]) for row in rows])
    rng = np.random.default_rng(seed)
    if "patient_id" not in rows[0]:
        return _stratified(labels, rng, val, test)
    patients: dict[str, list[int]] = {}
    for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
        if not row["patient_id"]:
            raise MedsslError(f"labels.csv line {line}: empty patient_id")
        patients.setdefault(row["patient_id"], []).append(i)
    # Each patient is stratified by its most common label.
    groups = list(patients.values())
    group_labels = np.array([Counter(labels[g].tolist()).most_common()[0][0] for g in groups])
    group_split = _stratified(group_labels, rng, val, test)
    out = np.zeros(len(rows), dtype=np.int64)
    for g, s in zip(groups, group_split, strict=True):
        out[g] = s
    return out


def load_folder(root: str | Path, *, size: int | None = None, window: tuple[float, float] | None = None,
                seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2) -> ImageData:
    """Load ``root/labels.csv`` (columns path,label[,split][,patient_id]) and the images it lists."""
    root = Path(root)
    if size is not None and size < 1:
        raise MedsslError(f"size must be a positive integer, got {size}")
    if window is not None and not window[0] < window[1]:
        raise MedsslError(f"window must be (low, high) with low < high, got {window}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise MedsslError("val_fraction and test_fraction must be > 0 and sum to less than 1")
    rows, lines = _read_csv(root)
    labels, class_names = parse_labels([row["label"] for row in rows], lines)
    split_of = split_ids(rows, lines, labels, seed, val_fraction, test_fraction)

    load = image_reader()
    images, intensity = [], []
    for row, line in zip(rows, lines, strict=True):
        rel = row["path"]
        img = load_image(_resolve(root, rel, f"labels.csv line {line}"), rel, load, size, window,
                         conventions=intensity)
        if images and img.shape != images[0].shape:
            _shape_error(rel, img.shape, rows[0]["path"], images[0].shape)
        images.append(img)
    stacked = np.stack(images)

    splits = {}
    for i, name in enumerate(SPLITS):
        mask = split_of == i
        if not mask.any():
            raise MedsslError(f"{root}: the {name} split is empty (add images or a 'split' column)")
        splits[name] = Split(stacked[mask], labels[mask])
    missing = sorted(set(range(len(class_names))) - set(splits["train"].labels.tolist()))
    if missing:
        names = [class_names[c] for c in missing]
        raise MedsslError(f"{root}: the train split has no images of class(es) {names}")
    return ImageData(root.resolve().name, splits, stacked.ndim - 2, len(class_names), class_names,
                     of_items(((c, None) for c in intensity), None))
