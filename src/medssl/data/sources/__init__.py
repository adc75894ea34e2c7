"""The built-in data sources, registered in ``medssl.data.registry``, and ``load_data``: any spec -> ImageData.

Specs: ``path/to/file.npz`` | a folder with labels.csv | a folder of images, volumes or DICOM (unlabeled,
recursive) | a glob | a manifest ``.csv`` | an MSD/nnU-Net folder (``dataset.json``) | a prepared cache |
``medmnist:NAME[@SIZE]`` | ``synthetic:lesions2d[@SIZE][?n=2000&ratio=2&seed=0]`` (also ``lesions3d``).
"""

from __future__ import annotations

import math
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

from medssl.data.dataset import ImageData
from medssl.data.items import Collection
from medssl.data.npz import load_npz
from medssl.data.preprocess import Prepared, Preprocessing
from medssl.data.registry import Source, find_source, register
from medssl.data.sampling import Sampling
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


def _is_npz(spec: str) -> bool:
    path = Path(spec)
    return path.suffix == ".npz" or (path.is_file() and path.suffix.lower() != ".csv")


def _labels_folder(spec: str) -> bool:
    return (Path(spec) / "labels.csv").is_file()


def _load_npz(spec: str, **_: object) -> ImageData:
    return load_npz(Path(spec))


def _load_labels_folder(spec: str, *, size: int | None = None, window: tuple[float, float] | None = None,
                        seed: int = 0, **_: object) -> ImageData:
    from medssl.data.folder import load_folder

    return load_folder(Path(spec), size=size, window=window, seed=seed)


def _register_builtin() -> None:
    from medssl.data.cache import is_cache, read_cache
    from medssl.data.sources import files, manifest, msd

    for source in (
        Source("synthetic", lambda s: s.startswith("synthetic:"), "synthetic:lesions2d",
               load=lambda spec, seed=0, **_: _synthetic(spec.removeprefix("synthetic:"), spec, seed)),
        Source("medmnist", lambda s: s.startswith("medmnist:"), "medmnist:NAME[@SIZE]",
               load=lambda spec, **_: _medmnist(spec.removeprefix("medmnist:"), spec)),
        Source("cache", is_cache, "a cache folder from `medssl data prepare`", prepared=read_cache),
        Source("msd", msd.detect, "an MSD/nnU-Net folder with dataset.json", scan=msd.scan),
        Source("labels-folder", _labels_folder, "a folder with labels.csv", load=_load_labels_folder),
        Source("folder", files.is_image_folder, "a folder of images/volumes/DICOM", scan=files.scan_folder),
        Source("manifest", manifest.detect, "a manifest .csv (path[,label][,mask][,fov][,split][,patient_id])",
               scan=manifest.scan),
        Source("file", files.is_image_file, "one image or volume file", scan=files.scan_glob),
        Source("npz", _is_npz, "an .npz file", load=_load_npz),
        Source("glob", files.is_glob, "a glob pattern", scan=files.scan_glob),
    ):
        register(source)


def load_data(spec: str, *, seed: int = 0, size: int | None = None,
              window: tuple[float, float] | None = None, preprocessing: Preprocessing | None = None,
              sampling: Sampling | None = None, log: Callable[[str], None] | None = None) -> ImageData:
    """Load any data spec as an ``ImageData``. ``size``/``window`` apply to image folders (``window`` is the
    explicit intensity range of files without ``preprocessing``); ``preprocessing`` (spacing, intensity,
    orientation) to file sources; ``sampling`` draws patches or slices of volumes."""
    from medssl.data.assemble import to_image_data
    from medssl.data.sampling import apply_sampling, sampler_for

    source = find_source(spec)
    pre = preprocessing or Preprocessing(intensity=None if window is None else f"range:{window[0]},{window[1]}")
    if source.load is not None:
        data = source.load(spec, seed=seed, size=size, window=window, preprocessing=pre)
        return apply_sampling(data, sampling)
    collection, prepared = prepared_items(source, spec, pre, log)
    return to_image_data(collection, prepared, size=size, keep_scale=resampled(prepared), seed=seed,
                         sampler=sampler_for(sampling, seed))


def prepared_items(source: Source, spec: str, pre: Preprocessing,
                   log: Callable[[str], None] | None = None) -> tuple[Collection, list[Prepared]]:
    """The preprocessed items of a file source (decoded now) or of a cache (memory-mapped)."""
    from medssl.data.assemble import prepare_collection

    if source.prepared is not None:
        return source.prepared(spec, pre)
    collection = source.scan(spec)
    return collection, prepare_collection(collection, pre, log)


def resampled(prepared: list[Prepared]) -> bool:
    """Whether the volumes were resampled to a spacing (now, or when their cache was prepared): then a size
    crops/pads them, keeping the physical scale, instead of resizing."""
    return any(p.resampled_to is not None for p in prepared)


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


_register_builtin()
