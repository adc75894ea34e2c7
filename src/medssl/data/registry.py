"""The source registry: every data spec is claimed by exactly one registered source, first match wins.

A source either *scans* files into a ``Collection`` of items (folders, globs, manifests, MSD, DICOM) or
*loads* ready arrays (npz, labels.csv folders, ``medmnist:``, ``synthetic:``), which are already in the
in-memory form of items (``ImageData``), or holds items already preprocessed (a ``data prepare`` cache).
Sources register themselves when ``medssl.data.sources`` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medssl.data.items import Collection
from medssl.errors import MedsslError


@dataclass(frozen=True)
class Source:
    name: str
    detect: Callable[[str], bool]
    help: str
    scan: Callable[[str], Collection] | None = None  # file sources
    load: Callable[..., Any] | None = None  # array sources: (spec, **options) -> ImageData
    # sources of items already preprocessed (a cache): (spec, Preprocessing) -> (Collection, [Prepared])
    prepared: Callable[..., Any] | None = None


_SOURCES: list[Source] = []


def register(source: Source) -> None:
    if any(s.name == source.name for s in _SOURCES):
        raise ValueError(f"source {source.name!r} registered twice")
    _SOURCES.append(source)


def sources() -> list[Source]:
    import medssl.data.sources  # noqa: F401  (registers the built-in sources)

    return list(_SOURCES)


def find_source(spec: str) -> Source:
    for source in sources():
        if source.detect(spec):
            return source
    known = "; ".join(s.help for s in sources())
    raise MedsslError(f"data not found or not understood: {spec!r} (expected {known})")


def scan(spec: str) -> Collection:
    """The items of a file source (an error for array sources, which have no files to scan)."""
    source = find_source(spec)
    if source.scan is None:
        raise MedsslError(f"{spec!r} is a {source.name} source of ready arrays, not a set of image files")
    return source.scan(spec)
