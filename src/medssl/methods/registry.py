"""Method name -> pretext task class; ``a+b+c`` names combine tasks on one shared encoder."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from medssl.errors import MedsslError
from medssl.methods.base import PretextTask
from medssl.values import coerce

METHODS: dict[str, type[PretextTask]] = {}
VIEW_INTERNAL = ("size",)  # view-recipe arguments a method sets itself, never a user


def register(cls: type[PretextTask]) -> type[PretextTask]:
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def parse_method(spec: str, weights: list[float] | None = None) -> list[tuple[type[PretextTask], float]]:
    """``"rotation+simclr"`` with weights ``[1, 0.5]`` -> [(Rotation, 1.0), (SimCLR, 0.5)]."""
    import medssl.methods.all  # noqa: F401  (registers every method)

    names = [n.strip().lower() for n in spec.split("+")]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise MedsslError(f"unknown method '{'+'.join(unknown) or spec}'; choose from {', '.join(sorted(METHODS))}")
    if len(set(names)) != len(names):
        raise MedsslError(f"method '{spec}' names a task twice")
    weights = [1.0] * len(names) if weights is None else weights
    if len(weights) != len(names):
        raise MedsslError(f"{len(weights)} weights given for {len(names)} methods in '{spec}'")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise MedsslError("method weights must be >= 0 with at least one > 0")
    return [(METHODS[n], float(w)) for n, w in zip(names, weights, strict=True)]


def list_methods() -> list[tuple[str, str, tuple[int, ...]]]:
    import medssl.methods.all  # noqa: F401

    return sorted((c.name, c.family, c.spatial_dims) for c in METHODS.values())


def method_parameters(cls: type[PretextTask]) -> dict[str, tuple[Any, Any]]:
    """A method's hyperparameters, name -> (type, default): its constructor's keyword arguments after the
    encoder, and, for methods taking ``**view_args``, those of its view recipe (``cls.view_recipe``)."""
    params: dict[str, tuple[Any, Any]] = {}
    sources = [cls.__init__]
    signature = inspect.signature(cls.__init__)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) and cls.view_recipe is not None:
        sources.append(cls.view_recipe)
    for function in sources:
        hints = typing.get_type_hints(function)
        for name, p in inspect.signature(function).parameters.items():
            if name in ("self", "encoder", *VIEW_INTERNAL) or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            params[name] = (hints.get(name, type(p.default)), p.default)
    return params


def method_kwargs(task_classes: list[tuple[type[PretextTask], float]], args: dict[str, Any]) -> list[dict[str, Any]]:
    """Constructor keyword arguments for each task from ``args`` (``key`` for every task that takes it,
    ``method.key`` for one task of a combination), coerced to the annotated types; one-line errors."""
    kwargs: list[dict[str, Any]] = [{} for _ in task_classes]
    names = [cls.name for cls, _ in task_classes]
    for key, value in args.items():
        target, _, arg = str(key).rpartition(".")
        if target and target not in names:
            raise MedsslError(f"method argument '{key}' names method '{target}', which is not in {'+'.join(names)}")
        taken = False
        for (cls, _), chosen in zip(task_classes, kwargs, strict=True):
            params = method_parameters(cls)
            if (target and target != cls.name) or arg not in params:
                continue
            chosen[arg] = coerce(value, params[arg][0], f"{cls.name} argument '{arg}'")
            taken = True
        if not taken:
            valid = "; ".join(f"{cls.name}: {', '.join(sorted(method_parameters(cls))) or '(none)'}"
                              for cls, _ in task_classes if not target or cls.name == target)
            raise MedsslError(f"unknown method argument '{arg}' ({valid})")
    return kwargs


def recorded_method_args(task_classes: list[tuple[type[PretextTask], float]], args: dict[str, Any]) -> dict[str, Any]:
    """``args`` validated and coerced, as plain YAML/JSON values (tuples as lists) for config.yaml and the study DB."""
    kwargs = method_kwargs(task_classes, args)
    recorded = {}
    for key in args:
        target, _, arg = str(key).rpartition(".")
        value = next(k[arg] for (cls, _), k in zip(task_classes, kwargs, strict=True)
                     if arg in k and (not target or target == cls.name))
        recorded[str(key)] = list(value) if isinstance(value, tuple) else value
    return recorded


def resolved_method_args(method: str, args: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of ``method`` with its value in a run (defaults, then ``args``), as plain values;
    ``name.key`` for combinations."""
    task_classes = parse_method(method)
    resolved = {}
    for (cls, _), given in zip(task_classes, method_kwargs(task_classes, args), strict=True):
        prefix = f"{cls.name}." if len(task_classes) > 1 else ""
        for key, (_, default) in method_parameters(cls).items():
            value = given.get(key, default)
            resolved[prefix + key] = list(value) if isinstance(value, tuple) else value
    return resolved
