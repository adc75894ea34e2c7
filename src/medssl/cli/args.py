"""Argument types, and the options generated from the config dataclasses (``medssl.config``): a field's
metadata gives its help text, metavar and option name, its type annotation the parser, and its default stays in
the dataclass: an option not given is None on the command line, so the config's own default applies."""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from medssl.config import RUN_RECORD_KEYS, CommonConfig, config_values, is_required
from medssl.errors import MedsslError

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# a negative number or a comma-separated list of numbers starting with one: '-0.5', '-1e-3', '-1000,400'
NEGATIVE_NUMBERS = re.compile(rf"^-{_NUMBER}(?:,[-+]?{_NUMBER})*$")


class Parser(argparse.ArgumentParser):
    """One-line errors, and option values that start with a minus sign parse as written (``--window -1000,400``):
    argparse takes any token it does not recognise as a plain negative number for an option."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # argparse consults this pattern to tell values from options; no medssl option looks like a number
        self._negative_number_matcher = NEGATIVE_NUMBERS

    def error(self, message: str) -> None:  # one line instead of usage + message
        raise MedsslError(f"{self.prog}: {message}")


def window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be LOW,HIGH (e.g. -1000,400), got '{text}'") from None
    return low, high


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'") from None


def words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def numbers(kind: type, what: str):
    """Parser of comma-separated numbers: ``1.5,1.5,2`` or one value."""
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got '{text}'") from None
    return parse


spacing_values = numbers(float, "spacing")
patch_values = numbers(int, "patch")


def key_values(text: str) -> dict[str, str]:
    """``a=1,b=[0.2,1.0]`` -> {"a": "1", "b": "[0.2,1.0]"}: commas inside brackets belong to the value."""
    pairs, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            pairs.append(text[start:i].strip())
            start = i + 1
    result = {}
    for pair in filter(None, pairs):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE pairs separated by commas, got '{pair}'")
        result[key.strip()] = value.strip()
    return result


LIST_PARSERS: dict[type, Callable[[str], list]] = {int: ints, float: floats, str: words}


def value_parser(hint: Any, name: str) -> Any:
    """The argparse ``type`` of a config field from its annotation: ``int | None`` -> int, ``list[float]`` ->
    comma-separated numbers, ``tuple[float, float]`` -> LOW,HIGH, ``tuple[int, ...]`` -> one or more numbers,
    ``dict`` -> KEY=VALUE pairs."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return LIST_PARSERS[members[0]]
    if origin is tuple and members == (float, float):
        return window
    if origin is tuple:
        return numbers(members[0], name)
    if hint is dict or origin is dict:
        return key_values
    return None if hint is str else hint


def flag(config_field: Field) -> str:
    return "--" + config_field.metadata.get("flag", config_field.name.replace("_", "-"))


def shown_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def add_field_option(container: Any, config_field: Field, hint: Any, help: str | None = None, *,
                     show_default: bool = True) -> None:
    """One option for a config field, its destination the field's name and its default None (not given).
    ``help`` replaces the field's own text; a default other than None is shown after it."""
    text = help or config_field.metadata.get("help", "")
    default = config_field.default_factory() if callable(config_field.default_factory) else config_field.default
    shown = default not in (None, {}, [], "") and not is_required(config_field)
    if show_default and shown and "default" not in text:
        text += f" (default: {shown_value(default)})"
    text = text.replace("%", "%%")  # argparse formats help with %
    value_type = value_parser(hint, config_field.name)
    if value_type is bool:  # --overwrite / --no-overwrite: a file's value can be switched either way
        container.add_argument(flag(config_field), dest=config_field.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        return
    container.add_argument(flag(config_field), dest=config_field.name, type=value_type, default=None, help=text,
                           metavar=config_field.metadata.get("metavar"), choices=config_field.metadata.get("choices"))


def add_config_options(parser: argparse.ArgumentParser, config: type, names: Iterable[str] | None = None, *,
                       container: Any = None, show_defaults: bool = True, help: dict[str, str] | None = None) -> None:
    """An option per field of ``config`` (or of the fields ``names``), in field order; an option the parser
    already has is shared, not repeated. ``container``: an argument group to put them in."""
    hints = typing.get_type_hints(config)
    wanted = None if names is None else set(names)
    for item in fields(config):
        if (wanted is not None and item.name not in wanted) or flag(item) in parser._option_string_actions:
            continue
        add_field_option(container or parser, item, hints[item.name], (help or {}).get(item.name),
                         show_default=show_defaults)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Geometry and intensity of file sources (folders, manifests, MSD, DICOM)."""
    add_config_options(p, CommonConfig, ("spacing", "intensity"))


def add_config_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="take every option from this YAML file of config fields (a run's config.yaml re-runs it); "
                        "options given here override the file's values")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress output (by default a bar on a terminal, else one line per epoch)")


def given_options(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of ``config`` given as options (not None)."""
    return {f.name: getattr(args, f.name) for f in fields(config) if getattr(args, f.name, None) is not None}


def read_config_file(path: str) -> tuple[str | None, dict[str, Any]]:
    """A YAML file of config fields, e.g. a run's config.yaml: its ``kind`` (None if it names none) and its
    entries, without those a run records beside its config (``RUN_RECORD_KEYS``)."""
    from medssl.runio import read_yaml

    entries = read_yaml(Path(path))
    kind = entries.pop("kind", None)
    if kind is not None:
        entries = {k: v for k, v in entries.items() if k not in RUN_RECORD_KEYS}
    return kind, entries


def config_from_options(args: argparse.Namespace, config: type, file_entries: dict[str, Any] | None = None) -> Any:
    """``config`` from the entries of ``--config`` (checked against its fields) overridden by the options given."""
    values = config_values(config, file_entries or {}, args.config) if getattr(args, "config", None) else {}
    values |= given_options(args, config)
    missing = [flag(f) for f in fields(config) if is_required(f) and f.name not in values]
    if missing:
        alternative = " (or give them in --config)" if hasattr(args, "config") else ""
        raise MedsslError(f"the following arguments are required: {', '.join(missing)}{alternative}")
    return config(**values)
