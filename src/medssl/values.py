"""Plain values (YAML scalars, lists and mappings, or text) checked against a type annotation and converted to
it, with one-line errors: for config files, study specs and method arguments alike."""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml

from medssl.errors import MedsslError


def coerce(value: Any, hint: Any, what: str) -> Any:
    """``value`` as the annotated type: int, float, bool, str, tuples (fixed or ``...``), lists, dicts,
    optionals. Text for a non-text type is read as YAML first ("0.2" -> 0.2, "[0.1, 1.0]" -> [0.1, 1.0])."""
    if isinstance(value, str) and hint not in (str, Any):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise MedsslError(f"{what}: cannot read {value!r}") from None
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is not type(None):
                try:
                    return coerce(value, member, what)
                except MedsslError:
                    continue
        raise MedsslError(f"{what} must be {describe(hint)}, got {value!r}")
    if origin is tuple and members[-1:] == (Ellipsis,):  # one value or several: 64 or [64, 64, 32]
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(coerce(v, members[0], what) for v in items)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(members):
            raise MedsslError(f"{what} must be {len(members)} values in brackets, e.g. [0.2, 1.0]; got {value!r}")
        return tuple(coerce(v, m, what) for v, m in zip(value, members, strict=True))
    if origin is list and isinstance(value, list | tuple):
        return [coerce(v, members[0], what) for v in value]
    if (hint is dict or origin is dict) and isinstance(value, dict):
        return dict(value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
        if hint is int and value != int(value):
            raise MedsslError(f"{what} must be a whole number, got {value!r}")
        return hint(value)
    if hint is str and value is not None and not isinstance(value, list | tuple | dict):
        return str(value)
    raise MedsslError(f"{what} must be {describe(hint)}, got {value!r}")


def describe(hint: Any) -> str:
    """``int | None`` -> "int or null", ``list[str]`` -> "a list of str", ``dict`` -> "a mapping"."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if m is type(None) else describe(m) for m in members)
    if origin is list:
        return f"a list of {describe(members[0])}"
    if origin is tuple and members[-1:] == (Ellipsis,):
        return f"one {describe(members[0])} or a list of them"
    if origin is tuple:
        return f"a list of {len(members)} values"
    if hint is dict or origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", None) or str(hint)
