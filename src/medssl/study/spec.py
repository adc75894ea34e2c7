"""Study specs: YAML (or a preset) -> a validated ``StudySpec`` whose grid the runner expands into cells.

The grid is datasets x methods (``scratch`` included; ``a+b`` combines tasks) x backbones x label fractions x
imbalance ratios x policies x seeds. Policies are named fine-tuning recipes; ``a+b`` stacks them.

``task: segment`` makes the downstream runs segmentation (mask folders or ``synthetic:blobs2d|3d``): the labels
axis is then ``label_counts`` (labelled images) or ``label_fractions``, there is no imbalance or policy axis,
``masks`` holds how the folders are read, and ``upstream: same`` pre-trains on crops of the training images.

``finetune.grid`` gives every arm the same small grid of fine-tuning choices, selected on validation
(``study.tuning``); ``finetune.val_labels: matched`` selects on a validation subset sized like the labelled
set. Pre-training never sees ``test`` images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from medssl.config import FinetuneConfig, PretrainConfig, SegmentConfig
from medssl.errors import MedsslError
from medssl.study.tuning import GRID_KEY, check_grid, grid_points, point_overrides

SCRATCH = "scratch"
# baseline initialisations: fine-tuned like scratch, from a weights file named under 'inits' (no pre-training cell)
BASELINES = ("imagenet", "medicalnet")
NOT_PRETRAINED = (SCRATCH, *BASELINES)
SAME = "same"  # pre-train on the downstream dataset's own training images

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

TASKS = ("classify", "segment")
PRETRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "pretrain_splits", "crops")
FINETUNE_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "min_samples_per_epoch", "linear_probe", "lp_ft",
                 "encoder_lr_mult", "val_labels", GRID_KEY)
SEGMENT_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "steps_per_epoch", "patch_size", "pos_fraction",
                "augment", "transfer", "threshold")
MASK_KEYS = ("mask_suffix", "fov", "channel", "val_count", "test_count")
DEFAULT_CROPS = 1024  # pre-training crops of the segmentation training images (upstream: same)
RUN_KEYS = ("accelerator", "devices", "precision", "num_workers", "spacing", "intensity", "patch", "slices")


@dataclass(frozen=True)
class Backbone:
    name: str
    width: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.name}x{self.width:g}"


@dataclass
class StudySpec:
    name: str
    datasets: list[str]
    methods: list[str]
    backbones: list[Backbone]
    label_fractions: list[float]
    seeds: list[int]
    imbalance_ratios: list[float | None] = field(default_factory=lambda: [None])
    policies: list[str] = field(default_factory=lambda: ["default"])
    upstream: list[str] = field(default_factory=lambda: [SAME])
    size: int | None = None
    pretrain: dict = field(default_factory=dict)  # PretrainConfig fields; seed: int (one encoder) or "same"
    finetune: dict = field(default_factory=dict)  # FinetuneConfig fields shared by every cell
    run: dict = field(default_factory=dict)  # accelerator / devices / precision / num_workers
    task: str = "classify"
    label_counts: list[int] | None = None  # segmentation: labelled images per run (instead of fractions)
    masks: dict = field(default_factory=dict)  # segmentation: how mask folders are read (MASK_KEYS)
    method_args: dict = field(default_factory=dict)  # method -> its hyperparameters (PretrainConfig.method_args)
    inits: dict = field(default_factory=dict)  # baseline method (imagenet, medicalnet) -> its weights file

    def to_dict(self) -> dict:
        data = asdict(self)
        data["backbones"] = [asdict(b) for b in self.backbones]
        # fields at their defaults are left out, so specs written before they existed keep their hash
        for key, default in (("task", "classify"), ("label_counts", None), ("masks", {}), ("method_args", {}),
                             ("inits", {})):
            if data[key] == default:
                del data[key]
        if self.label_counts:  # the labels axis is the counts; the fractions are unused
            del data["label_fractions"]
        return data

    @property
    def label_levels(self) -> list[tuple[float | None, int | None]]:
        """(label fraction, label count) of each point on the labels axis."""
        if self.label_counts:
            return [(None, count) for count in self.label_counts]
        return [(fraction, None) for fraction in self.label_fractions]

    @property
    def hash(self) -> str:
        """Stable over key order and YAML formatting: the hash of the canonical JSON of the validated spec."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def validate(self) -> None:
        from medssl.methods.registry import parse_method

        for name in ("datasets", "methods", "backbones", "label_fractions", "seeds", "imbalance_ratios",
                     "policies", "upstream"):
            if not getattr(self, name):
                raise MedsslError(f"study '{self.name}': '{name}' is empty, so the grid has no cells")
        for method in self.methods:
            if method not in NOT_PRETRAINED:
                parse_method(method)
        self._validate_method_args()
        self._validate_inits()
        for fraction in self.label_fractions:
            if not 0.0 < fraction <= 1.0:
                raise MedsslError(f"study '{self.name}': label fraction must lie in (0, 1], got {fraction}")
        for ratio in self.imbalance_ratios:
            if ratio is not None and not ratio >= 1.0:
                raise MedsslError(f"study '{self.name}': imbalance ratio must be >= 1, got {ratio}")
        for policy in self.policies:
            policy_overrides(policy)
        for seed in self.seeds:
            if seed < 0:
                raise MedsslError(f"study '{self.name}': seeds must be >= 0, got {seed}")
        if len(set(self.seeds)) != len(self.seeds):
            raise MedsslError(f"study '{self.name}': seeds repeat")
        from medssl.models.encoder import BackboneSpec

        for b in self.backbones:
            BackboneSpec(b.name, 2, 1, b.width)  # raises on unknown names and widths
        pre_seed = self.pretrain.get("seed", SAME)
        if pre_seed != SAME and (not isinstance(pre_seed, int) or pre_seed < 0):
            raise MedsslError(f"study '{self.name}': pretrain seed must be 'same' or an integer >= 0")
        if "test" in self.pretrain.get("pretrain_splits", []):
            raise MedsslError(f"study '{self.name}': pretrain_splits may not include 'test' (the test images must"
                              " stay unseen by every arm)")
        self._validate_task()
        # the shared settings must form valid run configs on their own
        PretrainConfig(data="", out="", **{**self.run, **{k: v for k, v in self.pretrain.items()
                                                          if k not in ("seed", "crops")}}).validate()
        if self.task == "segment":
            # a 'transfer' setting applies to the pre-trained arms (scratch cells drop it)
            checkpoint = "a pre-training run" if self.finetune.get("transfer") not in (None, "none") else "scratch"
            SegmentConfig(data="", out="", checkpoint=checkpoint, **self.run, **self.finetune, **self.masks).validate()
            return
        shared = {k: v for k, v in self.finetune.items() if k != GRID_KEY}
        points = grid_points(check_grid(self.finetune[GRID_KEY])) if GRID_KEY in self.finetune else [{}]
        for overrides in map(policy_overrides, self.policies):
            for point in points:
                FinetuneConfig(data="", out="", **{**self.run, **shared, **overrides,
                                                   **point_overrides(point)}).validate()

    def _validate_method_args(self) -> None:
        from medssl.methods.registry import parse_method, recorded_method_args

        for method, args in self.method_args.items():
            if method not in self.methods or method in NOT_PRETRAINED:
                pretrained = ", ".join(m for m in self.methods if m not in NOT_PRETRAINED)
                raise MedsslError(f"study '{self.name}': method_args for '{method}', which is not among the "
                                  f"pre-trained methods ({pretrained})")
            if not isinstance(args, dict):
                raise MedsslError(f"study '{self.name}': method_args of '{method}' must be a mapping of KEY: VALUE")
            self.method_args[method] = recorded_method_args(parse_method(method), args)

    def _validate_inits(self) -> None:
        unknown = [m for m in self.inits if m not in BASELINES]
        if unknown:
            raise MedsslError(f"study '{self.name}': 'inits' names '{unknown[0]}'; baselines are "
                              f"{', '.join(BASELINES)}")
        for method in self.methods:
            if method in BASELINES and method not in self.inits:
                raise MedsslError(f"study '{self.name}': method '{method}' needs its weights file under "
                                  f"'inits' (inits: {{{method}: PATH}}); medssl downloads nothing")
        for method, path in self.inits.items():
            if not Path(str(path)).is_file():
                raise MedsslError(f"study '{self.name}': {method} weights file not found: {path}")
            if method in self.methods:  # a baseline arm must have the architecture the other arms train
                from medssl.models.init import init_backbone

                name, width = init_backbone(f"{method}:{path}")
                other = [b.label for b in self.backbones if (b.name, b.width) != (name, width)]
                if other:
                    raise MedsslError(f"study '{self.name}': the {method} weights are a {name} x{width:g}; the "
                                      f"backbones must all be that ({', '.join(other)} differ)")

    def _validate_task(self) -> None:
        def refuse(problem: str) -> None:
            raise MedsslError(f"study '{self.name}': {problem}")

        if self.task not in TASKS:
            refuse(f"task must be {' or '.join(TASKS)}, got '{self.task}'")
        crops = self.pretrain.get("crops", DEFAULT_CROPS)
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            refuse(f"pretrain crops must be a whole number >= 1, got {crops!r}")
        if self.task == "classify":
            for key, given in (("label_counts", self.label_counts), ("masks", self.masks),
                               ("pretrain crops", "crops" in self.pretrain)):
                if given:
                    refuse(f"'{key}' is for segmentation studies (task: segment)")
            unknown = set(self.finetune) - set(FINETUNE_KEYS)
        else:
            if self.imbalance_ratios != [None]:
                refuse("segmentation studies have no imbalance axis (masks are not subsampled by class)")
            if self.policies != ["default"]:
                refuse("segmentation studies have no policy axis; set the recipe under 'finetune'")
            if self.label_counts is not None:
                if not self.label_counts or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                                for c in self.label_counts):
                    refuse(f"label counts must be whole numbers >= 1, got {self.label_counts!r}")
                if len(set(self.label_counts)) != len(self.label_counts):
                    refuse("label counts repeat")
            unknown = set(self.finetune) - set(SEGMENT_KEYS)
        if unknown:
            known = FINETUNE_KEYS if self.task == "classify" else SEGMENT_KEYS
            refuse(f"unknown 'finetune' setting(s) {', '.join(sorted(unknown))} for task {self.task}; "
                   f"known: {', '.join(known)}")


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


def _list(raw: dict, key: str, default: list | None = None) -> list:
    value = raw.get(key)
    value = default if value is None else value  # YAML's null means "not given"
    if value is None:
        raise MedsslError(f"study spec needs '{key}'")
    return value if isinstance(value, list) else [value]


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MedsslError(f"{what} must be a number, got {value!r}")
    return float(value)


def _backbone(value: object) -> Backbone:
    if isinstance(value, str):  # "resnet10" or "resnet10x0.25"
        name, _, width = value.partition("x")
        try:
            return Backbone(name, float(width) if width else 1.0)
        except ValueError:
            raise MedsslError(f"backbone '{value}' must be NAME or NAMExWIDTH (e.g. resnet10x0.25)") from None
    if isinstance(value, dict) and set(value) <= {"name", "width"} and "name" in value:
        return Backbone(str(value["name"]), _number(value.get("width", 1.0), "backbone width"))
    raise MedsslError(f"backbone must be NAME, NAMExWIDTH or {{name, width}}, got {value!r}")


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


def _settings(raw: dict, key: str, allowed: tuple[str, ...]) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise MedsslError(f"'{key}' must be a mapping")
    unknown = set(value) - set(allowed)
    if unknown:
        raise MedsslError(f"unknown '{key}' setting(s) {', '.join(sorted(unknown))}; known: {', '.join(allowed)}")
    return dict(value)


TOP_KEYS = ("name", "task", "datasets", "upstream", "methods", "backbones", "label_fractions", "label_counts",
            "imbalance_ratios", "policies", "seeds", "size", "pretrain", "finetune", "masks", "run", "method_args",
            "inits")


def parse_spec(raw: object, datasets: list[str] | None = None, seeds: int | None = None) -> StudySpec:
    """A validated spec from a parsed YAML mapping; ``datasets`` / ``seeds`` (a count) override the file."""
    if not isinstance(raw, dict):
        raise MedsslError("a study spec must be a YAML mapping")
    unknown = set(raw) - set(TOP_KEYS)
    if unknown:
        raise MedsslError(f"unknown study key(s) {', '.join(sorted(unknown))}; known: {', '.join(TOP_KEYS)}")
    raw_seeds = raw.get("seeds", 3) if seeds is None else seeds
    if isinstance(raw_seeds, bool) or not isinstance(raw_seeds, int | list):
        raise MedsslError(f"seeds must be a count or a list of integers, got {raw_seeds!r}")
    seed_list = list(range(raw_seeds)) if isinstance(raw_seeds, int) else raw_seeds
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seed_list):
        raise MedsslError(f"seeds must be integers, got {seed_list!r}")
    ratios = [None if r is None else _number(r, "imbalance ratio") for r in _list(raw, "imbalance_ratios", [None])]
    if raw.get("label_counts") is not None and raw.get("label_fractions") is not None:
        raise MedsslError("give 'label_fractions' or 'label_counts', not both")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise MedsslError(f"size must be a whole number, got {size!r}")
    spec = StudySpec(
        name=str(raw.get("name", "study")),
        datasets=[str(d) for d in (datasets or _list(raw, "datasets"))],
        upstream=[str(u) for u in _list(raw, "upstream", [SAME])],
        methods=[str(m).strip().lower() for m in _list(raw, "methods")],
        backbones=[_backbone(b) for b in _list(raw, "backbones", ["resnet18"])],
        label_fractions=[_number(f, "label fraction") for f in _list(raw, "label_fractions", [1.0])],
        imbalance_ratios=ratios,
        policies=[str(p) for p in _list(raw, "policies", ["default"])],
        seeds=seed_list,
        size=size,
        pretrain=_settings(raw, "pretrain", PRETRAIN_KEYS),
        finetune=_settings(raw, "finetune", tuple(dict.fromkeys(FINETUNE_KEYS + SEGMENT_KEYS))),
        run=_settings(raw, "run", RUN_KEYS),
        task=str(raw.get("task", "classify")),
        label_counts=None if raw.get("label_counts") is None else _list(raw, "label_counts"),
        masks=_settings(raw, "masks", MASK_KEYS),
        method_args=_method_args(raw),
        inits=_inits(raw),
    )
    try:
        spec.validate()
    except TypeError as err:  # a setting of the wrong type reaching a config constructor
        raise MedsslError(f"study '{spec.name}': {err}") from None
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
