"""Prepared caches (``medssl data prepare``); filled in below."""

from __future__ import annotations

from pathlib import Path

MANIFEST = "medssl-cache.json"


def is_cache(spec: str) -> bool:
    return (Path(spec) / MANIFEST).is_file()


def load_cache(spec: str, **options):
    raise NotImplementedError
