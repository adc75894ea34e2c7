"""The preprocessing cache (``medssl data prepare``): every item decoded, reoriented, resampled and normalised
once, stored as uint8 ``.npy`` files that training memory-maps, plus a manifest.

Layout of CACHE/:
  ``medssl-cache.json``  the manifest, written last: its presence means the cache is complete;
  ``building.json``      the key and options of a build in progress (removed when complete);
  ``volumes/``, ``masks/``, ``fov/``  one ``NNNNNN.npy`` per item; ``entries/NNNNNN.json`` its record,
  written after its arrays: an item is done when its entry exists, so a killed build resumes where it was.

Every file is written atomically (temp file + rename), so a kill or a full disk leaves whole files only. The
key hashes the source files (path, size, modification time), the items' labels/splits and the options: a
cache built from other files or with other options is refused with one line, never used stale.

Why .npy and not zarr: a volume is read as crops of one array; a memory-mapped .npy gives any crop with no
decompression and no extra dependency, and the page cache does the chunking. Compression (zarr's gain) buys
little on uint8 volumes that are mostly texture, and costs CPU in every training step.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np

from medssl.data.conventions import item_intensity
from medssl.data.items import Collection, Image, Item, Skipped
from medssl.data.preprocess import Prepared, Preprocessing, check_modalities
from medssl.errors import MedsslError

MANIFEST = "medssl-cache.json"
BUILDING = "building.json"
FORMAT = 1


def is_cache(spec: str) -> bool:
    return (Path(spec) / MANIFEST).is_file() or (Path(spec) / BUILDING).is_file()


def cache_key(collection: Collection, pre: Preprocessing) -> str:
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "options": pre.to_dict()}, sort_keys=True).encode())
    for item in collection.items:
        record = asdict(item)
        record["image"] = record["mask"] = record["fov"] = None  # paths are hashed below, with size and mtime
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
        for image in (item.image, item.mask, item.fov):
            for path in image.paths if image is not None else ():
                stat = path.stat()
                digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _entry_name(index: int) -> str:
    return f"{index:06d}"


def _prepare_one(index: int, item: Item, pre: Preprocessing, out: Path) -> dict:
    """Worker: preprocess one item and write its arrays, then its entry. Returns the entry."""
    from medssl.data.decode import DecodeError
    from medssl.data.preprocess import prepare_item
    from medssl.runio import write_json, write_npy

    name = _entry_name(index)
    entry: dict = {"index": index, "name": item.name, "label": item.label, "split": item.split,
                   "patient_id": item.patient_id, "modality": item.modality}
    try:
        prepared = prepare_item(item, pre)
    except DecodeError as err:
        entry["skipped"] = str(err)
    else:
        for key, array in (("image", prepared.image), ("mask", prepared.mask), ("fov", prepared.fov)):
            if array is not None:
                folder = {"image": "volumes", "mask": "masks", "fov": "fov"}[key]
                write_npy(out / folder / f"{name}.npy", array)
                entry[key] = f"{folder}/{name}.npy"
        entry.update(shape=list(prepared.image.shape), spacing=list(prepared.spacing),
                     affine=prepared.affine.tolist(), native_shape=list(prepared.native_shape),
                     native_spacing=list(prepared.native_spacing), native_range=list(prepared.native_range),
                     intensity=prepared.intensity,
                     resampled_to=None if prepared.resampled_to is None else list(prepared.resampled_to))
    write_json(out / "entries" / f"{name}.json", entry)
    return entry


def _check_target(out: Path, key: str, pre: Preprocessing, spec: str, overwrite: bool) -> bool:
    """True when ``out`` already holds this very cache, complete. Refuses a different one unless ``overwrite``."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise MedsslError(f"{out} exists and is not a folder")
    marker = out / MANIFEST if (out / MANIFEST).is_file() else out / BUILDING
    if not marker.is_file():
        if any(out.iterdir()):
            raise MedsslError(f"{out} is a non-empty folder that is not a medssl cache; choose another --out")
        return False
    stored = json.loads(marker.read_text())
    if stored.get("key") == key:
        return marker.name == MANIFEST
    if not overwrite:
        differs = [k for k, v in pre.to_dict().items() if stored.get("options", {}).get(k) != v]
        what = f"options ({', '.join(differs)})" if differs else "source files"
        raise MedsslError(f"{out} holds a cache of {stored.get('source')} built with other {what}; use another"
                          " --out, or --overwrite to rebuild it")
    shutil.rmtree(out)
    return False


def prepare(spec: str, out: str | Path, pre: Preprocessing, *, workers: int = 1, overwrite: bool = False,
            progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Build (or resume, or find complete) the cache of ``spec`` in ``out``; returns its manifest."""
    from medssl.data.registry import find_source
    from medssl.runio import write_json

    if workers < 1:
        raise MedsslError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    source = find_source(spec)
    if source.scan is None:
        raise MedsslError(f"{spec!r} is a {source.name} source of ready arrays: it needs no preparing")
    collection = source.scan(spec)
    check_modalities(collection, pre)
    if not collection.items:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in collection.skipped[:3])
        raise MedsslError(f"{spec}: no image found to prepare" + (f" ({reasons})" if reasons else ""))
    key = cache_key(collection, pre)
    if _check_target(out, key, pre, spec, overwrite):
        manifest = json.loads((out / MANIFEST).read_text())
        log(f"{out}: already prepared ({len(manifest['items'])} items), nothing to do")
        return manifest
    write_json(out / BUILDING, {"key": key, "source": spec, "options": pre.to_dict()})
    for partial in out.glob("*/.*"):  # temp files of writes a kill interrupted
        partial.unlink()
    done = {int(p.stem): json.loads(p.read_text()) for p in (out / "entries").glob("*.json")} \
        if (out / "entries").is_dir() else {}
    pending = [(i, item) for i, item in enumerate(collection.items) if i not in done]
    if done:
        log(f"{out}: resuming, {len(done)} of {len(collection.items)} items already prepared")
    bar = _progress(len(collection.items), len(done), progress)
    if workers == 1:
        for i, item in pending:
            done[i] = _prepare_one(i, item, pre, out)
            bar.update(1)
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_prepare_one, i, item, pre, out) for i, item in pending]
            for future in as_completed(futures):
                entry = future.result()
                done[entry["index"]] = entry
                bar.update(1)
    bar.close()
    entries = [done[i] for i in range(len(collection.items))]
    skipped = [asdict(s) for s in collection.skipped] + [
        {"path": e["name"], "reason": e["skipped"]} for e in entries if "skipped" in e]
    manifest = {"format": FORMAT, "key": key, "source": spec, "kind": collection.kind, "name": collection.name,
                "options": pre.to_dict(), "class_names": collection.class_names,
                "items": [e for e in entries if "skipped" not in e], "skipped": skipped}
    if not manifest["items"]:
        raise MedsslError(f"{spec}: no item could be decoded ({skipped[0]['path']}: {skipped[0]['reason']})")
    write_json(out / MANIFEST, manifest)
    (out / BUILDING).unlink(missing_ok=True)
    return manifest


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():  # a bar redrawn with carriage returns garbles a log file
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="volume", desc="prepare")


def _entry_intensity(entry: dict, options: dict) -> str | None:
    """The intensity convention of a cached item; caches built before it was recorded give what their
    intensity option implies, or None (unknown) without one."""
    if "intensity" in entry:
        return entry["intensity"]
    option = options.get("intensity")
    return None if option is None else item_intensity(option, entry.get("modality"), kept_as_stored=False)


def _resampled_to(entry: dict, options: dict) -> tuple[float, ...] | None:
    target = entry["resampled_to"] if "resampled_to" in entry else (
        options.get("spacing") if len(entry["spacing"]) == 3 else None)
    return None if target is None else tuple(target)


def read_cache(spec: str, pre: Preprocessing) -> tuple[Collection, list[Prepared]]:
    """The cached items, their arrays memory-mapped. Preprocessing options given now must match the cache's."""
    root = Path(spec)
    if not (root / MANIFEST).is_file():
        raise MedsslError(f"{root}: the cache is incomplete (its prepare was interrupted); rerun the same"
                          " `medssl data prepare` command to finish it")
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise MedsslError(f"{root}: cache format {manifest.get('format')} is not {FORMAT}; prepare it again")
    stored = manifest["options"]
    for key in ("spacing", "intensity"):
        given = pre.to_dict()[key]
        if given is not None and given != stored.get(key):
            raise MedsslError(f"{root} was prepared with {key} {stored.get(key)}, not {given}: prepare a new cache"
                              " with these options, or drop them (the cache's own apply)")
    items, prepared = [], []
    for entry in manifest["items"]:
        def load(rel: str | None) -> np.ndarray | None:
            return None if rel is None else np.load(root / rel, mmap_mode="r")

        item = Item(entry["name"], Image((root / entry["image"],), "npy"), entry.get("modality"),
                    entry.get("label"), None, None, entry.get("patient_id"), entry.get("split"))
        items.append(item)
        prepared.append(Prepared(item, load(entry["image"]), tuple(entry["spacing"]), np.array(entry["affine"]),
                                 load(entry.get("mask")), load(entry.get("fov")), tuple(entry["native_shape"]),
                                 tuple(entry["native_spacing"]), tuple(entry["native_range"]),
                                 _entry_intensity(entry, stored), _resampled_to(entry, stored)))
    collection = Collection(manifest["name"], f"cache of {manifest['kind']}", items,
                            [Skipped(**s) for s in manifest["skipped"]], manifest.get("class_names"))
    return collection, prepared
