"""Study specs: YAML (or a preset) -> a validated ``StudySpec`` whose grid the runner expands into cells.

The grid is the product of the registered axes (``study.axes``): datasets x upstream x methods (``scratch``
included; ``a+b`` combines tasks) x backbones x labels x imbalance ratios x policies x seeds. An axis a task's
config has no field for stays at its default (segmentation has no imbalance or policy axis).

``task`` names a registered task (``tasks.registry``); its config's fields are what ``finetune:`` may set,
``PretrainConfig``'s what ``pretrain:`` may set, ``CommonConfig``'s execution options what ``run:`` may set.
``task: segment`` reads mask folders or ``synthetic:blobs2d|3d`` (``masks:`` holds how), its labels axis may be
``label_counts``, and ``upstream: same`` pre-trains on crops of the training images.

``finetune.grid`` gives every arm the same small grid of fine-tuning choices, selected on validation
(``study.tuning``); ``finetune.val_labels: matched`` selects on a validation subset sized like the labelled
set. Pre-training never sees ``test`` images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from medssl.config import CommonConfig, PretrainConfig
from medssl.errors import MedsslError
from medssl.study.axes import (  # noqa: F401  (re-exported: the names studies have always imported from here)
    BASELINES,
    NOT_PRETRAINED,
    POLICIES,
    SAME,
    SCRATCH,
    Backbone,
    applicable,
    axes,
    policy_overrides,
    spec_keys,
)
from medssl.study.tasks import DEFAULT_CROPS, StudyTask, study_task
from medssl.study.tuning import GRID_KEY, check_grid, grid_points, point_overrides

# config fields a study sets itself (per cell, or from its top-level keys), never under pretrain:/finetune:/run:
STUDY_SET = ("data", "out", "seed", "size", "overwrite", "resume", "checkpoint")
STAGE_SETTINGS = ("batch_size", "lr", "weight_decay")  # common fields that differ between the two stages
NOT_STUDY_OPTIONS = ("window",)  # read by a run's own loader only: a study loads the data once per worker
PRETRAIN_STUDY_KEYS = ("seed", "crops")  # pretrain: seed 'same' | int; crops of the task's images (StudyTask)


def _names(config: type) -> set[str]:
    return {f.name for f in fields(config)}


def run_keys() -> tuple[str, ...]:
    """``run:`` -- the execution and data options every run of the study shares (CommonConfig fields)."""
    skip = {*STUDY_SET, *STAGE_SETTINGS, *NOT_STUDY_OPTIONS}
    return tuple(f.name for f in fields(CommonConfig) if f.name not in skip)


def pretrain_keys() -> tuple[str, ...]:
    """``pretrain:`` -- PretrainConfig's own fields and the stage settings; axes set method/backbone/data."""
    axis_set = {k for a in axes() for level in a.default[:1] for k in a.config(level)} | {"method", "data"}
    skip = {*STUDY_SET, *axis_set, *run_keys(), *NOT_STUDY_OPTIONS, "method_args"}
    own = [f.name for f in fields(PretrainConfig) if f.name not in skip]
    return tuple(dict.fromkeys([*own, *PRETRAIN_STUDY_KEYS]))


def finetune_keys(task: StudyTask) -> tuple[str, ...]:
    """``finetune:`` -- the task config's fields that no applicable axis sets, and ``grid`` where supported."""
    config_fields = task.config_fields()
    axis_set = {k for a in applicable(config_fields) for level in a.default[:1] for k in a.config(level)}
    axis_set |= {k for a in applicable(config_fields) for k in a.fields}
    skip = {*STUDY_SET, *axis_set, *run_keys(), *NOT_STUDY_OPTIONS, *task.data_options}
    own = [f.name for f in fields(task.task.config) if f.name not in skip]
    return tuple([*own, GRID_KEY] if task.tunable else own)


OTHER_KEYS = ("name", "task", "size", "pretrain", "finetune", "masks", "run", "method_args", "inits")


def top_keys() -> tuple[str, ...]:
    return (*OTHER_KEYS[:2], *spec_keys(), *OTHER_KEYS[2:])


@dataclass
class StudySpec:
    name: str
    levels: dict[str, list]  # axis key ("methods", "seeds", ...) -> its levels; see study.axes
    size: int | None = None
    pretrain: dict = field(default_factory=dict)  # PretrainConfig fields; seed: int (one encoder) or "same"
    finetune: dict = field(default_factory=dict)  # task config fields shared by every cell
    run: dict = field(default_factory=dict)  # execution options (accelerator, devices, precision, ...)
    task: str = "classify"
    masks: dict = field(default_factory=dict)  # how the task's data is read (StudyTask.data_options)
    method_args: dict = field(default_factory=dict)  # method -> its hyperparameters (PretrainConfig.method_args)
    inits: dict = field(default_factory=dict)  # baseline method (imagenet, medicalnet) -> its weights file

    def __getattr__(self, name: str) -> Any:  # spec.methods, spec.seeds, ...: an axis' levels
        levels = self.__dict__.get("levels")
        if levels is not None and name in levels:
            return levels[name]
        raise AttributeError(name)

    @property
    def label_fractions(self) -> list[float]:
        return [f for f, _ in self.label_levels if f is not None] or [1.0]

    @property
    def label_counts(self) -> list[int] | None:
        return [c for _, c in self.label_levels if c is not None] or None

    @property
    def study_task(self) -> StudyTask:
        return study_task(self.task)

    def to_dict(self) -> dict:
        """The canonical form (hashed): every axis' levels, then the settings. Fields and axes at their
        defaults that did not exist in earlier releases are left out, so older specs keep their hash."""
        data: dict = {"name": self.name, "size": self.size, "pretrain": self.pretrain, "finetune": self.finetune,
                      "run": self.run}
        for axis in axes():
            data.update(axis.canonical(self.levels[axis.key]))
        for key, default in (("task", "classify"), ("masks", {}), ("method_args", {}), ("inits", {})):
            if getattr(self, key) != default:
                data[key] = getattr(self, key)
        return json.loads(json.dumps(data))  # plain JSON values (tuples as lists), as stored

    @property
    def hash(self) -> str:
        """Stable over key order and YAML formatting: the hash of the canonical JSON of the validated spec."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def cell_count(self) -> int:
        """Fine-tuning cells per the grid (not-pretrained arms have no upstream: one per dataset)."""
        per_point = 1
        for axis in axes():
            if axis.key not in ("methods", "upstream"):
                per_point *= len(self.levels[axis.key])
        arms = sum(1 if m in NOT_PRETRAINED else len(self.upstream) for m in self.methods)
        return arms * per_point

    def validate(self) -> None:
        task = self.study_task
        self._check_axes_apply(task)
        self._validate_method_args()
        self._validate_inits()
        pre_seed = self.pretrain.get("seed", SAME)
        if pre_seed != SAME and (isinstance(pre_seed, bool) or not isinstance(pre_seed, int) or pre_seed < 0):
            raise MedsslError(f"study '{self.name}': pretrain seed must be 'same' or an integer >= 0")
        if "test" in self.pretrain.get("pretrain_splits", []):
            raise MedsslError(f"study '{self.name}': pretrain_splits may not include 'test' (the test images must"
                              " stay unseen by every arm)")
        self._validate_task_sections(task)
        # the shared settings must form valid run configs on their own
        PretrainConfig(data="", out="", **{**self.run, **{k: v for k, v in self.pretrain.items()
                                                          if k not in PRETRAIN_STUDY_KEYS}}).validate()
        self._validate_finetune(task)

    def _refuse(self, problem: str) -> None:
        raise MedsslError(f"study '{self.name}': {problem}")

    def _check_axes_apply(self, task: StudyTask) -> None:
        config_fields = task.config_fields()
        for axis in axes():
            if not axis.applies(config_fields) and self.levels[axis.key] != list(axis.default):
                missing = ", ".join(sorted(set(axis.fields) - config_fields))
                self._refuse(f"{task.name} studies have no {axis.title} axis (the {task.name} config has no "
                             f"{missing}); leave {' / '.join(repr(k) for k in axis.keys)} out")
        if self.label_counts and "label_count" not in config_fields:
            counted = [n for n in _task_names() if "label_count" in study_task(n).config_fields()]
            self._refuse(f"'label_counts' is for {' or '.join(counted)} studies; {task.name} takes "
                         "label_fractions")

    def _validate_finetune(self, task: StudyTask) -> None:
        """Every level of every applicable axis (and grid point) on the shared settings forms a valid config."""
        shared = {k: v for k, v in self.finetune.items() if k != GRID_KEY}
        points = grid_points(check_grid(self.finetune[GRID_KEY])) if GRID_KEY in self.finetune else [{}]
        config_fields = task.config_fields()
        variants: list[dict] = [{}]
        for axis in applicable(config_fields):
            if axis.key in ("datasets", "seeds") or len(self.levels[axis.key]) < 1:
                continue
            variants += [{k: v for k, v in axis.config(level).items() if k in config_fields}
                         for level in self.levels[axis.key]]
        for arm in dict.fromkeys(m if m in NOT_PRETRAINED else "pretrained" for m in self.methods):
            settings = {"data": "", "out": "", **self.run, **shared, **self.masks}
            if task.arm is not None:
                task.arm(arm, settings)
            if arm != SCRATCH and "checkpoint" in config_fields:
                settings["checkpoint"] = "a pre-training run"
            for variant in variants:
                for point in points:
                    task.make_config({**settings, **variant, **point_overrides(point)}).validate()

    def _validate_task_sections(self, task: StudyTask) -> None:
        crops = self.pretrain.get("crops", DEFAULT_CROPS)
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            self._refuse(f"pretrain crops must be a whole number >= 1, got {crops!r}")
        for key, given, supports in (("masks", self.masks, lambda t: bool(t.data_options)),
                                     ("pretrain crops", "crops" in self.pretrain, lambda t: t.crops)):
            if given and not supports(task):
                able = [n for n in _task_names() if supports(study_task(n))]
                self._refuse(f"'{key}' is for {' or '.join(able)} studies, not {task.name}")
        unknown = set(self.masks) - set(task.data_options)
        if unknown:
            self._refuse(f"unknown 'masks' setting(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(task.data_options)}")
        known = finetune_keys(task)
        unknown = set(self.finetune) - set(known)
        if unknown:
            self._refuse(f"unknown 'finetune' setting(s) {', '.join(sorted(unknown))} for task {task.name}; "
                         f"known: {', '.join(known)}")

    def _validate_method_args(self) -> None:
        from medssl.methods.registry import parse_method, recorded_method_args

        for method, args in self.method_args.items():
            if method not in self.methods or method in NOT_PRETRAINED:
                pretrained = ", ".join(m for m in self.methods if m not in NOT_PRETRAINED)
                self._refuse(f"method_args for '{method}', which is not among the pre-trained methods "
                             f"({pretrained})")
            if not isinstance(args, dict):
                self._refuse(f"method_args of '{method}' must be a mapping of KEY: VALUE")
            self.method_args[method] = recorded_method_args(parse_method(method), args)

    def _validate_inits(self) -> None:
        unknown = [m for m in self.inits if m not in BASELINES]
        if unknown:
            self._refuse(f"'inits' names '{unknown[0]}'; baselines are {', '.join(BASELINES)}")
        for method in self.methods:
            if method in BASELINES and method not in self.inits:
                self._refuse(f"method '{method}' needs its weights file under 'inits' (inits: {{{method}: PATH}});"
                             " medssl downloads nothing")
        for method, path in self.inits.items():
            if not Path(str(path)).is_file():
                self._refuse(f"{method} weights file not found: {path}")
            if method in self.methods:  # a baseline arm must have the architecture the other arms train
                from medssl.models.init import init_backbone

                name, width = init_backbone(f"{method}:{path}")
                other = [b.label for b in self.backbones if (b.name, b.width) != (name, width)]
                if other:
                    self._refuse(f"the {method} weights are a {name} x{width:g}; the backbones must all be that "
                                 f"({', '.join(other)} differ)")


def _task_names() -> list[str]:
    from medssl.tasks.registry import task_names

    return task_names()


def _inits(raw: dict) -> dict:
    value = raw.get("inits") or {}
    if not isinstance(value, dict):
        raise MedsslError("'inits' must be a mapping of baseline -> weights file (e.g. imagenet: resnet18.pth)")
    return {str(method).strip().lower(): str(path) for method, path in value.items()}


def _method_args(raw: dict) -> dict:
    value = raw.get("method_args") or {}
    if not isinstance(value, dict):
        raise MedsslError("'method_args' must be a mapping of method -> {KEY: VALUE}")
    return {str(method).strip().lower(): args for method, args in value.items()}


def _settings(raw: dict, key: str, allowed: tuple[str, ...] | None = None) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise MedsslError(f"'{key}' must be a mapping")
    unknown = set(value) - set(allowed) if allowed is not None else set()
    if unknown:
        raise MedsslError(f"unknown '{key}' setting(s) {', '.join(sorted(unknown))}; known: {', '.join(allowed)}")
    return dict(value)


def parse_spec(raw: object, datasets: list[str] | None = None, seeds: int | None = None) -> StudySpec:
    """A validated spec from a parsed YAML mapping; ``datasets`` / ``seeds`` (a count) override the file."""
    if not isinstance(raw, dict):
        raise MedsslError("a study spec must be a YAML mapping")
    known = top_keys()
    unknown = set(raw) - set(known)
    if unknown:
        raise MedsslError(f"unknown study key(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    raw = {**raw, **({"datasets": datasets} if datasets else {}), **({"seeds": seeds} if seeds is not None else {})}
    name = str(raw.get("name", "study"))
    task = str(raw.get("task", "classify"))
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise MedsslError(f"size must be a whole number, got {size!r}")
    try:
        levels = {axis.key: axis.levels(raw) for axis in axes()}
        spec = StudySpec(name=name, levels=levels, size=size,
                         pretrain=_settings(raw, "pretrain", pretrain_keys()),
                         finetune=_settings(raw, "finetune"),
                         run=_settings(raw, "run", run_keys()),
                         task=task, masks=_settings(raw, "masks"), method_args=_method_args(raw), inits=_inits(raw))
        spec.validate()
    except TypeError as err:  # a setting of the wrong type reaching a config constructor
        raise MedsslError(f"study '{name}': {err}") from None
    except MedsslError as err:
        message = str(err)
        raise MedsslError(message if message.startswith("study '") else f"study '{name}': {message}") from None
    return spec


def load_spec(path: str | Path, datasets: list[str] | None = None, seeds: int | None = None) -> StudySpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MedsslError(f"study spec not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError, IsADirectoryError) as err:
        raise MedsslError(f"{path}: not a readable YAML study spec ({type(err).__name__})") from None
    return parse_spec(raw, datasets=datasets, seeds=seeds)
