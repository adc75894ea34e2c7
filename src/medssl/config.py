"""Validated run configurations: one place for defaults and for the messages users see."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, ClassVar

from medssl.data.dataset import SPLITS
from medssl.data.preprocess import Preprocessing
from medssl.data.sampling import SLICE_AXES, Sampling, as_sizes
from medssl.errors import MedsslError
from medssl.values import coerce

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
# "light" is the default crop + flips; the others are the study augmentation ladder, each rung adding to the last
AUGMENTATIONS = ("none", "light", "flips", "rot90", "rotate", "scale")
LOSSES = ("ce", "weighted_ce", "focal")
LOGGERS = ("csv", "tensorboard", "mlflow")  # Lightning loggers a run writes to (several allowed)
VAL_LABELS = ("full", "matched")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise MedsslError(message)


check = _check  # for the task configs (tasks/*/config.py)

# what a run writes to its config.yaml beside its config fields (what it resolved or measured): reading a run's
# config.yaml back as a config skips them
RUN_RECORD_KEYS = frozenset({
    "backbone_spec", "spatial_dims", "medssl_version", "data_summary", "data_source", "micro_batch",
    "accumulate_grad_batches", "memory_estimate_gb", "memory_available_gb", "memory_source", "train_size",
    "train_class_counts", "train_images", "val_images", "test_images", "method_resolved", "transfer_resolved",
})


def option(default: Any = MISSING, *, help: str, metavar: str | None = None, flag: str | None = None,
           choices: tuple[str, ...] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A config field and what a user reads about it: its help text, a metavar, the option name where it is not
    the field's (``checkpoint-every`` for ``checkpoint_every_n_steps``) and the allowed values. The default lives
    here only: the command line (``medssl.cli.args``) builds its options from these fields."""
    metadata = {"help": help, "metavar": metavar, "flag": flag, "choices": choices}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def backbone_option(default: str, note: str = "") -> Any:
    return option(default, help=f"resnet10 | resnet18 | resnet34 | resnet50{note}")


def width_option(default: float) -> Any:
    return option(default, help="channel width factor (0.25-0.5 for CPU)")


def epochs_option(default: int) -> Any:
    return option(default, help="training epochs")


def is_required(config_field: Field) -> bool:
    return config_field.default is MISSING and config_field.default_factory is MISSING


def config_values(config: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` (e.g. a YAML file's) checked against the fields of the ``config`` dataclass and converted to
    their annotated types; an unknown key or a wrong type is one line naming ``where`` they came from."""
    names = [f.name for f in fields(config)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise MedsslError(f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(names)}")
    hints = typing.get_type_hints(config)
    return {key: coerce(value, hints[key], f"{where}: {key}") for key, value in values.items()}


@dataclass
class CommonConfig:
    lr_may_default: ClassVar[bool] = False  # may ``lr`` be None (a default resolved at run time)?
    data: str = option(help="npz, folder (images/volumes/DICOM, or with labels.csv), glob, manifest .csv, MSD "
                            "folder, prepared cache, medmnist:NAME[@SIZE] or synthetic:lesions2d", metavar="SPEC")
    out: str = option(help="run directory to create", metavar="DIR")
    seed: int = option(0, help="seed of initialisation, data order and subsets")
    # None: medssl.memory's default for the task and the data's dims
    batch_size: int | None = option(None, help="samples per optimizer step, over all DDP processes")
    lr: float = option(1e-3, help="learning rate")
    weight_decay: float = option(1e-4, help="weight decay")
    size: int | None = option(None, help="resize image-folder data to SIZE per axis")
    window: tuple[float, float] | None = option(None, help="CT intensity window LOW,HIGH for image folders",
                                                metavar="LOW,HIGH")
    spacing: tuple[float, ...] | None = option(
        None, help="resample volumes to this voxel size in mm (after reorienting to RAS)", metavar="X,Y,Z")
    intensity: str | None = option(  # see data.preprocess
        None, help="intensity normalisation: CT window in HU (MR by percentiles), MR percentiles, or a range",
        metavar="ct:LOW,HIGH|mr|range:LOW,HIGH")
    patch: tuple[int, ...] | None = option(  # evaluation uses centre crops
        None, help="train on random patches of volumes/images of this size (one value: every axis)", metavar="X[,Y,Z]")
    slices: str | None = option(None, help="train on 2D slices of volumes", choices=tuple(SLICE_AXES))
    accelerator: str = option("auto", help="Lightning accelerator: auto | cpu | gpu | mps")
    devices: int = option(1, help="devices per machine (more than one: DDP)")
    precision: str = option("32-true", help=" | ".join(PRECISIONS))
    num_workers: int = option(0, help="data-loading worker processes (0: load in the main process)")
    overwrite: bool = option(False, help="replace a finished run in the run directory")
    channels_last: bool = option(True, help="channels-last weights and activations: faster convolutions "
                                            "(benchmarks/); off keeps the channels-first layout")
    resume: bool = option(False, help="resume the unfinished run in the run directory from its last checkpoint "
                                      "(an unfinished run of the same options resumes anyway; this makes a missing "
                                      "checkpoint an error)")
    strategy: str = option("auto", help="Lightning strategy: auto | ddp | ddp_spawn | ...")
    num_nodes: int = option(1, help="machines for DDP (the batch size is global)")
    sync_batchnorm: bool = option(False, help="BatchNorm statistics over all DDP processes")
    checkpoint_every_n_steps: int | None = option(  # always one checkpoint per epoch too
        None, help="also checkpoint every STEPS optimizer steps (mid-epoch resume)", metavar="STEPS",
        flag="checkpoint-every")
    deterministic: bool = option(False, help="torch.use_deterministic_algorithms: reproducible on GPU too, slower "
                                             "(some ops refuse)")
    loggers: list[str] = option(factory=lambda: ["csv"], flag="logger", metavar="NAMES",
                                help=f"{' | '.join(LOGGERS)}, several comma-separated (mlflow: a file store in "
                                     "RUN/mlruns)")
    memory_limit_gb: float | None = option(
        None, flag="memory-limit", metavar="GB",
        help="memory a training step may use (default: what the machine has free); a batch that does not fit "
             "trains as micro-batches with gradient accumulation, or is refused")

    def validate(self) -> None:
        _check(self.batch_size is None or self.batch_size >= 2, f"batch size must be >= 2, got {self.batch_size}")
        _check(self.memory_limit_gb is None or self.memory_limit_gb > 0,
               f"memory limit must be > 0 GB, got {self.memory_limit_gb}")
        _check((self.lr is None and self.lr_may_default) or (self.lr is not None and self.lr > 0),
               f"learning rate must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        _check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _check(self.devices >= 1, "devices must be >= 1")
        _check(self.num_workers >= 0, "num_workers must be >= 0")
        _check(self.num_nodes >= 1, "num_nodes must be >= 1")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        _check(bool(self.loggers) and not unknown,
               f"unknown logger '{(unknown or [''])[0]}'; choose from {', '.join(LOGGERS)}")
        _check(not (self.resume and self.overwrite), "--resume and --overwrite exclude each other")
        _check(self.checkpoint_every_n_steps is None or self.checkpoint_every_n_steps >= 1,
               f"checkpoint every n steps must be >= 1, got {self.checkpoint_every_n_steps}")
        _check(self.size is None or 8 <= self.size <= 1024, f"size must lie in [8, 1024], got {self.size}")
        if self.window is not None:
            _check(len(self.window) == 2 and self.window[0] < self.window[1],
                   f"window must be LOW,HIGH with LOW < HIGH, got {self.window}")
        self.preprocessing()
        self.sampling()

    def __post_init__(self) -> None:  # "64", 64 or [64, 64, 32] (CLI, YAML, notebook) -> a tuple
        self.spacing = as_sizes(self.spacing, float, "spacing")
        self.patch = as_sizes(self.patch, int, "patch")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(spacing=self.spacing, intensity=self.intensity)

    def sampling(self) -> Sampling | None:
        if self.patch is None and self.slices is None:
            return None
        return Sampling(patch=self.patch, slices=self.slices)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("window", "spacing", "patch"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass
class PretrainConfig(CommonConfig):
    lr_may_default: ClassVar[bool] = True
    # None: the method's recommended rate (methods.base.pretraining_lr), recorded resolved in config.yaml
    lr: float | None = option(None, help="learning rate (default: the method's own where its paper prescribes "
                                         "one, e.g. DINO 5e-4 x batch / 256; else 1e-3)")
    method: str = option("simclr", help="method name, or several joined by '+' (`medssl methods` lists them)")
    weights: list[float] | None = option(None, help="loss weights for combined methods, e.g. 1,1,0.5",
                                         metavar="W,...")
    # validated against the method's signature (methods.registry)
    method_args: dict = option(factory=dict, metavar="KEY=VALUE,...",
                               help="method hyperparameters (view recipe included), e.g. "
                                    "temperature=0.2,crop_scale=[0.2,1.0] (METHOD.KEY for one method of a "
                                    "combination); `medssl methods --args` lists them")
    backbone: str = backbone_option("resnet18")
    width: float = width_option(1.0)
    epochs: int = epochs_option(10)
    pretrain_splits: list[str] = option(factory=lambda: ["train"], metavar="SPLITS",
                                        help="comma-separated splits whose images form the unlabeled pool")
    max_steps: int | None = option(None, help="stop after this many optimizer steps (for huge datasets), epochs "
                                              "permitting")

    def validate(self) -> None:
        super().validate()
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, f"max steps must be >= 1, got {self.max_steps}")
        unknown = [s for s in self.pretrain_splits if s not in SPLITS]
        _check(not unknown and bool(self.pretrain_splits),
               f"pretrain splits must be among {', '.join(SPLITS)}, got {', '.join(self.pretrain_splits) or 'none'}")


@dataclass
class FinetuneConfig(CommonConfig):
    checkpoint: str = option("scratch", metavar="RUN",
                             help="pre-training run directory, model package (medssl export), or 'scratch'")
    label_fraction: float = option(1.0, help="fraction of the labelled training images")
    imbalance_ratio: float | None = None
    linear_probe: bool = False  # a frozen encoder and a converged convex-solver head (finetune.probe)
    lp_ft: bool = False  # linear probe, then full fine-tuning starting from that head
    encoder_lr_mult: float = 1.0  # the encoder's learning rate is lr x this
    val_labels: str = "full"  # full | matched: select on a stratified val subset sized like the labelled set
    epochs: int = epochs_option(20)
    backbone: str = backbone_option("resnet18", " (from scratch; a checkpoint brings its own)")
    width: float = width_option(1.0)
    augment: str = option("light", help=f"classify/segment: {' | '.join(AUGMENTATIONS)} (the ladder); "
                                        "detect: none | flips")
    min_samples_per_epoch: int = 512
    # training policies (defaults keep plain cross-entropy on uniformly drawn batches)
    loss: str = "ce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    balanced_sampling: bool = False

    def validate(self) -> None:
        super().validate()
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(0.0 < self.label_fraction <= 1.0, f"label fraction must lie in (0, 1], got {self.label_fraction}")
        _check(self.imbalance_ratio is None or self.imbalance_ratio >= 1.0,
               f"imbalance ratio must be >= 1, got {self.imbalance_ratio}")
        _check(self.augment in AUGMENTATIONS, f"augment must be one of {', '.join(AUGMENTATIONS)}")
        _check(self.min_samples_per_epoch >= 0, "min samples per epoch must be >= 0")
        _check(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got '{self.loss}'")
        _check(self.focal_gamma >= 0, f"focal gamma must be >= 0, got {self.focal_gamma}")
        _check(0.0 <= self.label_smoothing < 1.0, f"label smoothing must lie in [0, 1), got {self.label_smoothing}")
        _check(self.mixup_alpha >= 0, f"mixup alpha must be >= 0, got {self.mixup_alpha}")
        _check(not (self.linear_probe and self.lp_ft), "--linear-probe and --lp-ft exclude each other")
        _check(self.encoder_lr_mult > 0, f"encoder lr multiplier must be > 0, got {self.encoder_lr_mult}")
        _check(self.val_labels in VAL_LABELS, f"val labels must be {' or '.join(VAL_LABELS)}, got '{self.val_labels}'")


@dataclass
class SegmentConfig(CommonConfig):
    """Segmentation fine-tuning (binary masks), 2D or 3D; see ``medssl.tasks.segment.run``."""

    checkpoint: str = "scratch"
    transfer: str | None = None  # none | encoder | decoder | both; None: both if the run has a decoder
    backbone: str = "resnet10"  # used when no encoder is transferred; a checkpoint brings its own
    width: float = 0.5
    epochs: int = 20
    steps_per_epoch: int = 50
    batch_size: int = 8
    patch_size: int = 96
    label_count: int | None = None  # number of labelled training images; overrides label_fraction
    label_fraction: float = 1.0
    mask_suffix: str = "_mask"
    fov: str = "none"  # none | threshold | a file suffix of field-of-view masks
    channel: str = "all"  # all | grey | green
    val_count: int | None = None
    test_count: int | None = None
    pos_fraction: float = 0.5
    augment: str = "light"
    threshold: float | None = None  # probability threshold; None: the best on the validation images
    save_predictions: bool = True

    def validate(self) -> None:
        super().validate()
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.steps_per_epoch >= 1, f"steps per epoch must be >= 1, got {self.steps_per_epoch}")
        _check(8 <= self.patch_size <= 1024, f"patch size must lie in [8, 1024], got {self.patch_size}")
        _check(self.transfer in (None, "none", "encoder", "decoder", "both"),
               f"transfer must be none, encoder, decoder or both, got '{self.transfer}'")
        _check(not (self.checkpoint == "scratch" and self.transfer not in (None, "none")),
               f"--transfer {self.transfer} needs a pre-training run as --checkpoint, not 'scratch'")
        _check(not (self.checkpoint != "scratch" and self.transfer == "none"),
               "--transfer none trains from scratch: pass --checkpoint scratch")
        _check(self.label_count is None or self.label_count >= 1,
               f"label count must be >= 1, got {self.label_count}")
        _check(0.0 < self.label_fraction <= 1.0, f"label fraction must lie in (0, 1], got {self.label_fraction}")
        _check(self.fov != "", "fov must be none, threshold or a file suffix")
        _check(self.channel in ("all", "grey", "green"), f"channel must be all, grey or green, got '{self.channel}'")
        _check(self.val_count is None or self.val_count >= 1, "val count must be >= 1")
        _check(self.test_count is None or self.test_count >= 1, "test count must be >= 1")
        _check(self.devices * self.num_nodes == 1, "segmentation runs on one device (its patch sampler is not "
               "sharded across processes): use --devices 1 --num-nodes 1")
        _check(0.0 <= self.pos_fraction <= 1.0, f"pos fraction must lie in [0, 1], got {self.pos_fraction}")
        _check(self.threshold is None or 0.0 < self.threshold < 1.0,
               f"threshold must lie in (0, 1), got {self.threshold}")
        _check(self.augment in AUGMENTATIONS, f"augment must be one of {', '.join(AUGMENTATIONS)}")
        _check(self.patch is None and self.slices is None,
               "segmentation samples its own foreground-aware patches: use --patch-size, not --patch/--slices")
