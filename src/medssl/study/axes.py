"""Study axes, declared once: each ``Axis`` says how its levels are read and validated, how a level maps onto a
fine-tuning run's config, how it is labelled (cell names, report columns, phrases, ``study status``), whether
it pairs runs, and which tasks it applies to. The spec, the plan, the conditions the statistics group by, the
report's columns and the cell counts all derive from ``axes()``; a new axis is one ``register(Axis(...))``.

Roles: ``arm`` axes say what is compared (the method, and where it was pre-trained); ``paired`` axes are held
equal between a method and its scratch partner (dataset, backbone, labels, ...); the ``replicate`` axis (seed)
matches runs one by one and is not part of a condition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medssl.errors import MedsslError

SCRATCH = "scratch"
# baseline initialisations: fine-tuned like scratch, from a weights file named under 'inits' (no pre-training cell)
BASELINES = ("imagenet", "medicalnet")
NOT_PRETRAINED = (SCRATCH, *BASELINES)
SAME = "same"  # pre-train on the downstream dataset's own training images
ROLES = ("arm", "paired", "replicate")

# Named fine-tuning policies: FinetuneConfig overrides. ``default`` is today's recipe (light crop + flips, CE).
POLICIES: dict[str, dict] = {
    "default": {},
    "none": {"augment": "none"},
    "flips": {"augment": "flips"},
    "rot90": {"augment": "rot90"},
    "rotate": {"augment": "rotate"},
    "scale": {"augment": "scale"},
    "balanced": {"balanced_sampling": True},
    "weighted": {"loss": "weighted_ce"},
    "focal": {"loss": "focal"},
    "mixup": {"mixup_alpha": 0.2},
    "smooth": {"label_smoothing": 0.1},
}


@dataclass(frozen=True)
class Backbone:
    name: str
    width: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.name}x{self.width:g}"


def _same(level: Any) -> Any:
    return level


def _text(level: Any) -> str:
    return str(level)


@dataclass(frozen=True)
class Axis:
    """One axis of the study grid.

    ``name`` is the cell label, condition key and results column of a level; ``key`` the spec key listing the
    levels (and the ``StudySpec`` attribute). ``parse`` turns one raw YAML value into a level or raises a
    one-line ``MedsslError`` naming what is valid; ``check`` judges the levels together. ``overrides`` maps a
    level onto the fine-tuning config, ``pretrain`` onto the pre-training config (the encoder then differs per
    level; method, upstream, backbone and seed shape the encoder in ``runner.plan``); ``fields`` are the
    fine-tuning config fields it sets: the axis applies to a task
    whose config has them all (else the spec must leave it at ``default``), and a spec may not set them under
    ``finetune:``. ``tag`` is the level's part of a cell's name, ``format`` the level in words, ``title`` the
    report column. ``shown``: when the report names the level (``always``; ``varied``: the study has several
    levels; ``set``: several levels or one other than the default). ``recorded_at_default``: the spec's
    canonical form lists the axis even at its default (axes that existed before the registry; a newer axis is
    left out at its default, so older specs keep their hash)."""

    name: str
    key: str
    title: str
    role: str
    default: tuple
    parse: Callable[[object], Any] = _same
    check: Callable[[list], None] | None = None
    overrides: Callable[[Any], dict] | None = None
    pretrain: Callable[[Any], dict] | None = None
    fields: tuple[str, ...] = ()
    tag: Callable[[Any], str] | None = None
    format: Callable[[Any], str] = _text
    columns: Callable[[Any], dict] | None = None  # the cell labels of a level (default {name: level})
    shown: str = "set"
    recorded_at_default: bool = False
    read: Callable[[dict], list] | None = None  # levels from the raw spec when one key is not enough
    dump: Callable[[list], dict] | None = None  # the canonical spec entries of the levels
    spec_keys: tuple[str, ...] = ()  # the spec keys it reads (default: ``key``)
    encode: Callable[[Any], Any] = _same  # a level as JSON
    phrase: str = "{}"  # the formatted level in a sentence ("{} imbalance")
    from_labels: Callable[[dict], Any] | None = None  # a level (as ``format`` takes it) from a cell's labels
    unpaired_labels: tuple[str, ...] = ()  # labels of ``columns`` that only describe (the backbone's width)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"axis {self.name}: role must be one of {ROLES}, got {self.role}")
        if self.shown not in ("always", "varied", "set"):
            raise ValueError(f"axis {self.name}: shown must be always, varied or set")

    @property
    def keys(self) -> tuple[str, ...]:
        return self.spec_keys or (self.key,)

    def levels(self, raw: dict) -> list:
        """The validated levels of the raw spec mapping (the default when the key is absent or null)."""
        if self.read is not None:
            levels = self.read(raw)
        else:
            value = raw.get(self.key)
            if value is None and not self.default:
                raise MedsslError(f"study spec needs '{self.key}'")
            values = list(self.default) if value is None else value if isinstance(value, list) else [value]
            levels = [self.parse(v) for v in values]
        given = next((k for k in self.keys if raw.get(k) is not None), self.keys[0])
        if not levels:
            raise MedsslError(f"'{given}' is empty, so the grid has no cells")
        if len({repr(level) for level in levels}) != len(levels):
            raise MedsslError(f"'{given}' repeats a level: {', '.join(map(self.format, levels))}")
        if self.check is not None:
            self.check(levels)
        return levels

    def canonical(self, levels: list) -> dict:
        if self.dump is not None:
            return self.dump(levels)
        if not self.recorded_at_default and tuple(levels) == tuple(self.default):
            return {}
        return {self.key: [self.encode(level) for level in levels]}

    def applies(self, config_fields: set[str]) -> bool:
        return set(self.fields) <= config_fields

    def labels(self, level: Any) -> dict:
        return self.columns(level) if self.columns is not None else {self.name: level}

    def label_names(self) -> tuple[str, ...]:
        """The label names of this axis that conditions, pairings and ``study status`` use (``columns`` may
        carry more: the backbone's width)."""
        probe = self.default[0] if self.default else None
        return tuple(k for k in self.labels(probe) if k not in self.unpaired_labels)

    def config(self, level: Any) -> dict:
        return self.overrides(level) if self.overrides is not None else {}

    def cell(self, labels: dict) -> str:
        """The level of a cell (or condition) as a report cell, from its labels."""
        return self.format(self.from_labels(labels) if self.from_labels is not None else labels.get(self.name))

    def words(self, labels: dict) -> str:
        return self.phrase.format(self.cell(labels))

    def is_default(self, labels: dict) -> bool:
        return bool(self.default) and all(labels.get(k) == v for k, v in self.labels(self.default[0]).items()
                                          if k in self.label_names())

    def count_levels(self, spec: dict) -> int:
        """How many levels a stored (canonical) spec gives this axis."""
        return max([len(spec.get(k) or []) for k in self.keys] + [1])


# --- levels: parsing and checks ------------------------------------------------------------------------------
def number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MedsslError(f"{what} must be a number, got {value!r}")
    return float(value)


def whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MedsslError(f"{what} must be whole numbers, got {value!r}")
    return value


def parse_backbone(value: object) -> Backbone:
    if isinstance(value, Backbone):
        backbone = value
    elif isinstance(value, str):  # "resnet10" or "resnet10x0.25"
        name, _, width = value.partition("x")
        try:
            backbone = Backbone(name, float(width) if width else 1.0)
        except ValueError:
            raise MedsslError(f"backbone '{value}' must be NAME or NAMExWIDTH (e.g. resnet10x0.25)") from None
    elif isinstance(value, dict) and set(value) <= {"name", "width"} and "name" in value:
        backbone = Backbone(str(value["name"]), number(value.get("width", 1.0), "backbone width"))
    else:
        raise MedsslError(f"backbone must be NAME, NAMExWIDTH or {{name, width}}, got {value!r}")
    from medssl.models.encoder import BackboneSpec

    BackboneSpec(backbone.name, 2, 1, backbone.width)  # raises on unknown names and widths
    return backbone


def parse_method(value: object) -> str:
    method = str(value).strip().lower()
    if method not in NOT_PRETRAINED:
        from medssl.methods.registry import parse_method as known

        known(method)  # raises naming the known methods
    return method


def policy_overrides(policy: str) -> dict:
    """``scale+balanced`` -> the merged FinetuneConfig overrides of its parts."""
    merged: dict = {}
    for part in policy.split("+"):
        part = part.strip()
        if part not in POLICIES:
            raise MedsslError(f"unknown policy '{part}'; choose from {', '.join(POLICIES)} (stack with '+')")
        clash = {k for k in POLICIES[part] if k in merged and merged[k] != POLICIES[part][k]}
        if clash:
            raise MedsslError(f"policy '{policy}' sets {', '.join(sorted(clash))} twice")
        merged.update(POLICIES[part])
    return merged


def check_policies(policies: list[str]) -> None:
    for policy in policies:
        policy_overrides(policy)


def parse_fraction(value: object) -> float:
    fraction = number(value, "label fraction")
    if not 0.0 < fraction <= 1.0:
        raise MedsslError(f"label fraction must lie in (0, 1], got {fraction:g}")
    return fraction


def parse_ratio(value: object) -> float | None:
    if value is None:
        return None
    ratio = number(value, "imbalance ratio")
    if not ratio >= 1.0:
        raise MedsslError(f"imbalance ratio must be >= 1 (majority:minority), got {ratio:g}")
    return ratio


def read_labels(raw: dict) -> list[tuple[float | None, int | None]]:
    """The labels axis: ``label_fractions`` (of the training set) or ``label_counts`` (labelled images)."""
    fractions, counts = raw.get("label_fractions"), raw.get("label_counts")
    if fractions is not None and counts is not None:
        raise MedsslError("give 'label_fractions' or 'label_counts', not both")
    if counts is None:
        values = [1.0] if fractions is None else fractions if isinstance(fractions, list) else [fractions]
        return [(parse_fraction(v), None) for v in values]
    values = counts if isinstance(counts, list) else [counts]
    if not values or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in values):
        raise MedsslError(f"label counts must be whole numbers >= 1, got {counts!r}")
    if len(set(values)) != len(values):
        raise MedsslError("label counts repeat")
    return [(None, c) for c in values]


def dump_labels(levels: list) -> dict:
    counts = [c for _, c in levels if c is not None]
    return {"label_counts": counts} if counts else {"label_fractions": [f for f, _ in levels]}


def labels_phrase(level: tuple[float | None, int | None]) -> str:
    fraction, count = level
    if count is not None:
        return f"{count} labelled image{'s' if count != 1 else ''}"
    return f"{fraction * 100:g} % labels"


def read_seeds(raw: dict) -> list[int]:
    value = raw.get("seeds", 3)
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise MedsslError(f"seeds must be a count or a list of integers, got {value!r}")
    seeds = list(range(value)) if isinstance(value, int) else value
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise MedsslError(f"seeds must be integers, got {seeds!r}")
    if any(s < 0 for s in seeds):
        raise MedsslError(f"seeds must be >= 0, got {min(seeds)}")
    return seeds


def ratio_phrase(ratio: float | None) -> str:
    return "natural" if ratio is None else f"1:{ratio:g}"


# --- the registry --------------------------------------------------------------------------------------------
BUILT_IN: tuple[Axis, ...] = (
    Axis("dataset", "datasets", "dataset", "paired", (), parse=_text, recorded_at_default=True,
         overrides=lambda d: {"data": d}, fields=("data",), shown="varied"),
    Axis("upstream", "upstream", "upstream", "arm", (SAME,), parse=_text, recorded_at_default=True),
    Axis("method", "methods", "method", "arm", (), parse=parse_method, tag=_text, recorded_at_default=True),
    Axis("backbone", "backbones", "backbone", "paired", (Backbone("resnet18"),), parse=parse_backbone,
         overrides=lambda b: {"backbone": b.name, "width": b.width}, fields=("backbone", "width"),
         tag=lambda b: b.label, format=lambda b: b.label if isinstance(b, Backbone) else str(b),
         encode=lambda b: {"name": b.name, "width": b.width},
         columns=lambda b: {"backbone": b.label, "width": b.width}, shown="varied", recorded_at_default=True,
         unpaired_labels=("width",)),
    Axis("labels", "label_levels", "labels", "paired", ((1.0, None),), read=read_labels, dump=dump_labels,
         spec_keys=("label_fractions", "label_counts"), fields=("label_fraction",),
         overrides=lambda level: {"label_fraction": level[0] if level[0] is not None else 1.0,
                                  "label_count": level[1]},
         tag=lambda level: f"n{level[1]}" if level[1] is not None else f"f{level[0]:g}", format=labels_phrase,
         from_labels=lambda labels: (labels.get("label_fraction"), labels.get("label_count")),
         columns=lambda level: {"label_fraction": level[0], "label_count": level[1]}, shown="always"),
    Axis("imbalance_ratio", "imbalance_ratios", "imbalance", "paired", (None,), parse=parse_ratio,
         overrides=lambda r: {"imbalance_ratio": r}, fields=("imbalance_ratio",),
         tag=lambda r: "rnat" if r is None else f"r{r:g}", format=ratio_phrase, phrase="{} imbalance",
         recorded_at_default=True),
    Axis("policy", "policies", "policy", "paired", ("default",), parse=_text,
         check=check_policies, overrides=policy_overrides,
         fields=tuple(sorted({k for o in POLICIES.values() for k in o})), tag=_text,
         phrase="policy {}", recorded_at_default=True),
    Axis("seed", "seeds", "seed", "replicate", (0, 1, 2), read=read_seeds, overrides=lambda s: {"seed": s},
         fields=("seed",), tag=lambda s: f"s{s}", recorded_at_default=True),
)
_AXES: list[Axis] = list(BUILT_IN)


def axes() -> tuple[Axis, ...]:
    """Every registered axis, in grid order (the order of a cell's name parts and of the report's columns)."""
    return tuple(_AXES)


def register(axis: Axis) -> Axis:
    if any(a.name == axis.name or a.key == axis.key for a in _AXES):
        raise ValueError(f"axis '{axis.name}' ({axis.key}) is registered already")
    _AXES.append(axis)
    return axis


def unregister(name: str) -> None:
    if name in {a.name for a in BUILT_IN}:
        raise ValueError(f"axis '{name}' is built in")
    _AXES[:] = [a for a in _AXES if a.name != name]


def get_axis(name: str) -> Axis:
    return next(a for a in _AXES if a.name == name)


def spec_keys() -> tuple[str, ...]:
    return tuple(k for a in _AXES for k in a.keys)


def condition_keys() -> tuple[str, ...]:
    """What a condition (an arm at one point of the grid, over its seeds) is: every arm and paired label."""
    return tuple(k for a in _AXES if a.role != "replicate" for k in a.label_names())


def pairing_keys() -> tuple[str, ...]:
    """What a method shares with its scratch partner, besides the seed: every paired label."""
    return tuple(k for a in _AXES if a.role == "paired" for k in a.label_names())


def label_keys() -> tuple[str, ...]:
    """Every label a fine-tuning cell carries (``study status`` counts cells per level of each)."""
    return tuple(k for a in _AXES for k in a.label_names())


def applicable(config_fields: set[str]) -> tuple[Axis, ...]:
    return tuple(a for a in _AXES if a.applies(config_fields))


def shown(axis: Axis, spec: dict, labels: dict) -> bool:
    """Whether the report names an axis' level in a condition of the (stored) ``spec``: see ``Axis.shown``."""
    if axis.shown == "always":
        return True
    return axis.count_levels(spec) > 1 or (axis.shown == "set" and not axis.is_default(labels))


def setting_axes() -> tuple[Axis, ...]:
    """The paired axes a report describes a condition by (the dataset has its own section)."""
    return tuple(a for a in _AXES if a.role == "paired" and a.name != "dataset")
