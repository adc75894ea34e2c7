"""``medssl data info``: describe any source (counts, modalities, shapes, spacings, intensities, and every
skipped file or series with its reason). It describes; it never refuses a corpus."""

from __future__ import annotations

from collections import Counter

import numpy as np

from medssl.data.decode import DecodeError, decode, spacing_of
from medssl.data.items import Collection, Skipped
from medssl.data.preprocess import Prepared, Preprocessing
from medssl.errors import MedsslError


def _range(values: list[tuple[float, ...]], fmt: str) -> str:
    array = np.array(values, dtype=np.float64)
    low, high = array.min(axis=0), array.max(axis=0)
    show = "x".join(format(v, fmt) for v in low)
    return show if np.allclose(low, high) else f"{show} .. {'x'.join(format(v, fmt) for v in high)}"


def describe_collection(collection: Collection) -> str:
    """Decodes every item (native geometry, no preprocessing) to report what is really there."""
    rows = []
    skipped = list(collection.skipped)
    for item in collection.items:
        try:
            image = decode(item.image)
        except DecodeError as err:
            skipped.append(Skipped(item.name, str(err)))
            continue
        dims = image.ndim - 1
        values = image.as_tensor()
        rows.append((item, dims, int(image.shape[0]), tuple(image.shape[1:]), spacing_of(image.affine, dims),
                     (float(values.min()), float(values.max()))))
    return _report(collection, rows, skipped)


def describe_prepared(collection: Collection, prepared: list[Prepared]) -> str:
    """A prepared cache: shapes and spacings as stored, intensities as they were before normalisation."""
    rows = [(p.item, p.image.ndim - 1, int(p.image.shape[0]), tuple(p.image.shape[1:]), p.spacing, p.native_range)
            for p in prepared]
    return _report(collection, rows, list(collection.skipped))


def _report(collection: Collection, rows: list[tuple], skipped: list[Skipped]) -> str:
    lines = [f"source: {collection.kind} {collection.name}",
             f"images: {len(rows)} readable, {len(skipped)} skipped"]
    modalities = Counter(item.modality or "unknown" for item, *_ in rows)
    lines.append("modalities: " + ", ".join(f"{m} {n}" for m, n in sorted(modalities.items())))
    for dims in sorted({r[1] for r in rows}):
        group = [r for r in rows if r[1] == dims]
        lines.append(f"{dims}D: {len(group)} image(s), channels {sorted({r[2] for r in group})}, "
                     f"shape {_range([r[3] for r in group], 'g')}"
                     + (f", spacing (mm) {_range([r[4] for r in group], '.4g')}" if dims == 3 else ""))
    for modality in sorted(modalities):
        group = [r for r in rows if (r[0].modality or "unknown") == modality]
        low, high = min(r[5][0] for r in group), max(r[5][1] for r in group)
        lines.append(f"intensity {modality}: {low:g} .. {high:g}")
    labels = Counter(item.label for item, *_ in rows if item.label)
    if labels:
        lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    masks = sum(item.mask is not None for item, *_ in rows)
    if masks:
        lines.append(f"masks: {masks} image(s) with a mask" + (f" (classes: {', '.join(collection.class_names)})"
                                                             if collection.class_names else ""))
    splits = Counter(item.split for item, *_ in rows if item.split)
    if splits:
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
    patients = {item.patient_id for item, *_ in rows if item.patient_id}
    if patients:
        lines.append(f"patients: {len(patients)}")
    lines.append("series/images:")
    for item, dims, _, shape, spacing, (low, high) in rows:
        where = f"spacing {'x'.join(f'{s:.4g}' for s in spacing)} mm" if dims == 3 else f"{dims}D"
        lines.append(f"  {item.name}: {item.modality or '-'} {'x'.join(map(str, shape))} {where},"
                     f" intensity {low:g}..{high:g}")
    if skipped:
        lines.append(f"skipped ({len(skipped)}):")
        lines.extend(f"  {s.path}: {s.reason}" for s in skipped)
    return "\n".join(lines)


def describe_spec(spec: str, *, size: int | None = None, window: tuple[float, float] | None = None) -> str:
    from medssl.data.registry import find_source
    from medssl.data.sources import describe, load_data

    source = find_source(spec)
    if source.prepared is not None:
        return describe_prepared(*source.prepared(spec, Preprocessing()))
    if source.scan is None:
        return describe(load_data(spec, size=size, window=window))
    collection = source.scan(spec)
    if not collection.items and not collection.skipped:
        raise MedsslError(f"{spec}: no files found")
    return describe_collection(collection)
