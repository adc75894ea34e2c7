"""Method name -> pretext task class; ``a+b+c`` names combine tasks on one shared encoder."""

from __future__ import annotations

from medssl.errors import MedsslError
from medssl.methods.base import PretextTask

METHODS: dict[str, type[PretextTask]] = {}


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
