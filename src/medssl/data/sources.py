"""Data specs -> ImageData. One entry point, ``load_data``, for every kind of source.

Specs: ``path/to/file.npz`` | ``path/to/folder`` (with labels.csv) | ``medmnist:NAME[@SIZE]`` |
``synthetic:lesions2d[@SIZE][?n=2000&ratio=2&seed=0]`` (also ``lesions3d``).
"""

from __future__ import annotations

import math
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl

from medssl.data.dataset import ImageData
from medssl.data.npz import load_npz
from medssl.errors import MedsslError

MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{file}?download=1"
MEDMNIST_SIZES = (28, 64, 128, 224)
SYNTHETIC_KINDS = {"lesions2d": 2, "lesions3d": 3}
MAX_SYNTHETIC_IMAGES = 200_000


def cache_dir() -> Path:
    return Path(os.environ.get("MEDSSL_CACHE", Path.home() / ".cache" / "medssl"))


def _split_size(name: str, spec: str) -> tuple[str, int | None]:
    if "@" not in name:
        return name, None
    name, _, size = name.partition("@")
    if not size.isdigit():
        raise MedsslError(f"bad size in data spec {spec!r}: {size!r} is not a whole number")
    return name, int(size)


def _synthetic(body: str, spec: str, seed: int) -> ImageData:
    from medssl.data.synthetic import make_lesions

    body, _, query = body.partition("?")
    kind, size = _split_size(body, spec)
    if kind not in SYNTHETIC_KINDS:
        raise MedsslError(f"unknown synthetic dataset {kind!r}; choose from {', '.join(SYNTHETIC_KINDS)}")
    options: dict = {"seed": seed}
    casts = {"n": int, "ratio": float, "seed": int, "val_fraction": float, "test_fraction": float}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in casts:
            raise MedsslError(f"unknown option {key!r} in {spec!r}; known: {', '.join(casts)}")
        try:
            options[key] = casts[key](value)
        except ValueError:
            raise MedsslError(f"option {key!r} in {spec!r} must be a number, got {value!r}") from None
    if not 1 <= options.get("n", 1) <= MAX_SYNTHETIC_IMAGES:
        raise MedsslError(f"option 'n' in {spec!r} must lie in 1..{MAX_SYNTHETIC_IMAGES}, got {options['n']}")
    if not all(math.isfinite(v) for v in options.values()):
        raise MedsslError(f"options in {spec!r} must be finite numbers")
    if size is not None:
        options["size"] = size
    elif SYNTHETIC_KINDS[kind] == 3:
        options["size"] = 24
    return make_lesions(SYNTHETIC_KINDS[kind], **options)


def _medmnist(body: str, spec: str) -> ImageData:
    name, size = _split_size(body.lower(), spec)
    if not re.fullmatch(r"[a-z0-9_]+", name):  # the name becomes a file name in the cache: no paths
        raise MedsslError(f"bad MedMNIST name {name!r} in {spec!r}: letters, digits and _ only (e.g. breastmnist)")
    size = size or 28
    if size not in MEDMNIST_SIZES:
        raise MedsslError(f"MedMNIST sizes are {MEDMNIST_SIZES}, got {size}")
    file = f"{name}.npz" if size == 28 else f"{name}_{size}.npz"
    target = cache_dir() / file
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(MEDMNIST_URL.format(file=file), timeout=20) as response:
                partial.write_bytes(response.read())
            partial.replace(target)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            partial.unlink(missing_ok=True)
            raise MedsslError(
                f"cannot download MedMNIST '{file}' ({getattr(err, 'reason', err)}); place the file by hand at {target}"
            ) from None
    return load_npz(target)


def load_data(spec: str, *, seed: int = 0, size: int | None = None,
              window: tuple[float, float] | None = None) -> ImageData:
    """Load any supported data spec; ``size``/``window`` apply to image folders."""
    if spec.startswith("synthetic:"):
        return _synthetic(spec.removeprefix("synthetic:"), spec, seed)
    if spec.startswith("medmnist:"):
        return _medmnist(spec.removeprefix("medmnist:"), spec)
    path = Path(spec)
    if path.is_dir():
        from medssl.data.folder import load_folder

        return load_folder(path, size=size, window=window, seed=seed)
    if path.suffix == ".npz" or path.is_file():
        return load_npz(path)
    raise MedsslError(
        f"data not found: {spec!r} (expected an .npz file, a folder with labels.csv, medmnist:NAME"
        " or synthetic:lesions2d)"
    )


def describe(data: ImageData) -> str:
    """Human-readable summary used by ``medssl data info``."""
    lines = [
        f"name: {data.name}",
        f"spatial_dims: {data.spatial_dims}",
        f"channels: {data.channels}",
        f"image shape: {'x'.join(map(str, data.spatial_shape))}",
        f"classes: {data.num_classes} ({', '.join(data.class_names)})",
    ]
    for split, values in data.splits.items():
        counts = data.class_counts(split)
        lines.append(f"{split}: {len(values)} images, per class {counts}")
    return "\n".join(lines)
