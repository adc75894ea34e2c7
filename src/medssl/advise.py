"""``medssl advise``: profile a dataset, state what the literature predicts for it, write a study that tests it.

The predictions are priors from two seed papers, each tagged with its source; the study decides. The spec's
seed count comes from the same power calculation the report uses (``study.inference.seeds_for``) under stated
assumptions about seed noise and the test set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medssl.data.dataset import UNLABELED, ImageData
from medssl.errors import MedsslError
from medssl.study.inference import ALPHA, POWER, detectable_difference, seeds_for
from medssl.study.presets import PRESETS
from medssl.study.spec import SCRATCH, StudySpec, parse_spec

ZHANG = "Zhang et al. 2023, Medical Image Analysis"
WOLF = "Wolf et al. 2023, Scientific Reports"

# Modalities of the MedMNIST collections, by name (other sources do not record one).
MODALITIES = {
    "breastmnist": "breast ultrasound", "pneumoniamnist": "chest X-ray", "chestmnist": "chest X-ray",
    "dermamnist": "dermatoscopy", "octmnist": "retinal OCT", "retinamnist": "fundus photography",
    "pathmnist": "colon pathology", "bloodmnist": "blood cell microscopy", "tissuemnist": "kidney microscopy",
    "organamnist": "abdominal CT", "organcmnist": "abdominal CT", "organsmnist": "abdominal CT",
    "organmnist3d": "abdominal CT", "nodulemnist3d": "chest CT", "adrenalmnist3d": "abdominal CT",
    "fracturemnist3d": "chest CT", "vesselmnist3d": "brain MRA", "synapsemnist3d": "electron microscopy",
}

# Stated assumptions of the power calculation (the study then measures the real values).
EFFECT_AUC = 0.05  # a gain worth detecting: the size of the low-label gains both papers report
SEED_SD = 0.04  # between-seed sd of a paired AUC difference at low labels
ARM_CORRELATION = 0.75  # correlation of the two arms' AUC errors on one test set
ASSUMED_AUC = 0.8
MAX_SEEDS = 10
SEVERE_IMBALANCE = 20.0
BALANCED = 1.5
LADDER = (0.01, 0.1, 1.0)
MIN_LABELLED = 4  # a label level smaller than this has nothing to fine-tune on


@dataclass
class Profile:
    name: str
    spatial_dims: int
    channels: int
    shape: tuple[int, ...]
    modality: str
    unlabeled: int  # images the pre-training may use (the training split, labels ignored)
    labelled: int  # labelled training images
    val: int
    test: int
    class_counts: list[int]  # labelled training images per class
    test_counts: list[int]
    class_names: list[str]

    @property
    def imbalance(self) -> float:
        present = [c for c in self.class_counts if c > 0]
        return max(present) / min(present) if present else math.nan

    def lines(self) -> list[str]:
        shape = "x".join(map(str, self.shape))
        counts = ", ".join(f"{n} {name}" for n, name in zip(self.class_counts, self.class_names, strict=True))
        return [f"data: {self.name} ({self.spatial_dims}D, {self.channels} channel(s), {shape}; modality "
                f"{self.modality})",
                f"images: {self.unlabeled} for pre-training (training split), {self.labelled} labelled for "
                f"fine-tuning, {self.val} validation, {self.test} test",
                f"classes (training): {counts}; imbalance 1:{self.imbalance:.1f}"]


def profile(data: ImageData) -> Profile:
    train = data.splits["train"]
    names = data.class_names or [str(c) for c in range(data.num_classes)]
    stem = re.sub(r"[@?].*$", "", Path(data.name).stem).lower()
    return Profile(data.name, data.spatial_dims, data.channels, data.spatial_shape,
                   MODALITIES.get(stem, "unknown (not recorded by this source)"), len(train),
                   int((train.labels != UNLABELED).sum()), len(data.splits["val"]) if "val" in data.splits else 0,
                   len(data.splits["test"]) if "test" in data.splits else 0, data.class_counts("train"),
                   data.class_counts("test") if "test" in data.splits else [], names)


@dataclass
class Prediction:
    statement: str
    source: str
    tested_by: str


@dataclass
class Advice:
    profile: Profile
    predictions: list[Prediction]
    spec: StudySpec
    comparisons: int  # per metric family, what the report corrects over
    var_images: float
    detectable: float  # the AUC difference the spec detects with 80 % power at the corrected level
    power_note: str
    label_note: str = ""
    assumptions: list[str] = field(default_factory=list)


def auc_difference_variance(positives: int, negatives: int, auc: float = ASSUMED_AUC,
                            correlation: float = ARM_CORRELATION) -> float:
    """Test-set variance of a paired AUC difference: Hanley & McNeil (1982) for each AUC, and a correlation of
    the two arms' errors on the same images."""
    if positives < 1 or negatives < 1:
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) \
        / (positives * negatives)
    return 2 * variance * (1 - correlation)


def _fractions(p: Profile, labels: int | None) -> tuple[list[float], str]:
    if labels is not None:
        if not 1 <= labels <= p.labelled:
            raise MedsslError(f"--labels must lie in 1..{p.labelled} (the labelled training images), got {labels}")
        fraction = labels / p.labelled
        return sorted({fraction, 1.0}), f"{labels} labelled images = {fraction * 100:.3g} % of the training labels"
    levels = [f for f in LADDER if round(f * p.labelled) >= MIN_LABELLED]
    return levels, f"label fractions {', '.join(f'{f * 100:g} %' for f in levels)} of {p.labelled} labels"


def _predictions(p: Profile, fractions: list[float], imbalanced: bool) -> list[Prediction]:
    low = min(fractions)
    minority = p.class_names[min(range(len(p.class_counts)), key=lambda c: (p.class_counts[c], c))]
    out = []
    if p.imbalance >= SEVERE_IMBALANCE:
        out.append(Prediction(f"At 1:{p.imbalance:.0f} imbalance (severe), pre-training gains are expected to be "
                              "marginal or negative, also for the minority class.", ZHANG,
                              "Δ AUC and Δ minority recall at the natural imbalance"))
    elif imbalanced:
        out.append(Prediction(f"At 1:{p.imbalance:.1f} imbalance, pre-training gains are expected mainly in "
                              f"minority-class ({minority}) recall, less in overall AUC.", ZHANG,
                              "Δ minority recall vs Δ AUC at the natural imbalance"))
        out.append(Prediction("On the same data balanced (ratio 1), gains are expected to be marginal.", ZHANG,
                              "the imbalance ratio 1 cells"))
        out.append(Prediction("Gains are expected to shrink when stacked with common policies (scale "
                              "augmentation + class-balanced resampling).", ZHANG,
                              "policy 'scale+balanced' vs 'default'"))
    else:
        out.append(Prediction("On balanced data, pre-training gains are expected to be marginal.", ZHANG,
                              "Δ AUC at every label level"))
    out.append(Prediction(f"As labels shrink (down to {low * p.labelled:.0f} labelled images), SparK (masked image "
                          "modelling) is expected to hold up better than contrastive SimCLR.", WOLF,
                          "Δ AUC of spark vs simclr (each against scratch) at the lowest label level"))
    out.append(Prediction("With all labels, pre-training is expected to add little over scratch.", f"{ZHANG}; {WOLF}",
                          "Δ AUC at 100 % labels"))
    return out


def advise(data: ImageData, labels: int | None = None, data_spec: str | None = None, max_seeds: int = MAX_SEEDS,
           effect: float = EFFECT_AUC) -> Advice:
    """The profile, tagged priors, and a study spec with the seeds the stated power needs (capped)."""
    p = profile(data)
    if p.labelled < 2 or p.test == 0:
        raise MedsslError(f"{data.name}: advise needs labelled training images and a test split")
    fractions, label_note = _fractions(p, labels)
    imbalanced = BALANCED <= p.imbalance < SEVERE_IMBALANCE
    paper = PRESETS["label-fractions"]
    raw = {"name": f"advise-{re.sub(r'[^A-Za-z0-9]+', '-', Path(data.name).stem).strip('-').lower() or 'data'}",
           "datasets": [data_spec or data.name], "methods": [SCRATCH, "simclr", "spark"],
           "backbones": paper["backbones"], "label_fractions": fractions,
           "imbalance_ratios": [None, 1] if imbalanced else [None],
           "policies": ["default", "scale+balanced"] if imbalanced else ["default"],
           "pretrain": dict(paper["pretrain"]), "finetune": dict(paper["finetune"])}
    comparisons = (len(raw["methods"]) - 1) * len(fractions) * len(raw["imbalance_ratios"]) * len(raw["policies"])
    alpha = ALPHA / comparisons  # what Holm's first step asks of each comparison
    minority = min(c for c in p.test_counts if c > 0) if any(p.test_counts) else 0
    var_images = auc_difference_variance(minority, p.test - minority)
    seed_variance = SEED_SD**2
    seeds = seeds_for(effect, seed_variance, var_images, p.test, alpha, POWER, max_seeds)
    if seeds is None:
        seeds = max_seeds
        floor = detectable_difference(0.0, 1_000_000, var_images, p.test, alpha, POWER)
        note = (f"No seed count detects {effect:+.2f} AUC here: {p.test} test images alone limit the study to "
                f"differences of {floor:.3f} or more at the corrected level (alpha {alpha:.4f}); "
                f"{seeds} seeds used (the cap).")
    else:
        note = f"{seeds} seeds detect {effect:+.2f} AUC with {POWER:.0%} power at the corrected level " \
               f"(Holm over {comparisons} comparisons per metric: alpha {alpha:.4f})."
    detectable = detectable_difference(seed_variance / seeds, seeds, var_images, p.test, alpha, POWER)
    raw["seeds"] = seeds
    spec = parse_spec(raw)
    assumptions = [f"between-seed sd of a paired AUC difference {SEED_SD} (assumed)",
                   f"test-set variance of a paired AUC difference from Hanley & McNeil at AUC {ASSUMED_AUC} with "
                   f"{minority} minority / {p.test - minority} other test images and arm correlation "
                   f"{ARM_CORRELATION} (assumed): sd {math.sqrt(var_images):.3f}"]
    return Advice(p, _predictions(p, fractions, imbalanced), spec, comparisons, var_images, detectable, note,
                  label_note, assumptions)


def render(advice: Advice) -> str:
    """The printed advice: profile, tagged priors, the power statement (YAML comment lines in the spec)."""
    lines = ["Profile:", *(f"  {line}" for line in advice.profile.lines()), f"  labels: {advice.label_note}",
             "Predictions (priors from the literature, not results; the study decides):"]
    lines += [f"  - [prior: {p.source}] {p.statement} Tested by: {p.tested_by}." for p in advice.predictions]
    lines += ["Power:", f"  {advice.power_note}",
              f"  this design detects AUC differences of {advice.detectable:.3f} or more with 80 % power",
              *(f"  assumption: {a}" for a in advice.assumptions)]
    return "\n".join(lines)


def spec_yaml(advice: Advice) -> str:
    header = "\n".join(f"# {line}" if line else "#" for line in render(advice).splitlines())
    return f"{header}\n{yaml.safe_dump(advice.spec.to_dict(), sort_keys=False)}"
