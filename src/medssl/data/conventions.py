"""What a dataset's uint8 values and voxels mean (its *conventions*), and the check that an encoder pre-trained
on one dataset (the upstream) may be fine-tuned on another.

Intensity conventions, one per item (``Prepared.intensity``), by family:
  ``ct:LOW,HIGH``, ``range:LOW,HIGH``  fixed: stored values LOW..HIGH (HU for CT) mapped to 0..255;
  ``mr``      percentile: each image's 0.5-99.5 percentiles mapped to 0..255;
  ``minmax``  each image's own min..max (a file source given no intensity option);
  ``stored``  the values as the files store them (8-bit pictures, npz arrays, synthetic data): a scale medssl
              did not choose and cannot compare.

The upstream check (``check_upstream``), run before anything is trained or written:
- refused (``MedsslError``, one line): the two datasets are (or may be) of one modality and their intensities
  were normalised differently (a CT window vs per-image min-max or percentiles, ...). Fine-tuning would first
  have to unlearn the scale, and the same intensity option as the upstream's fixes it;
- warned (returned, for the run log and config.yaml): cross-modality transfer (CT vs MR, both known: a
  legitimate experiment, e.g. Models Genesis transfers chest-CT encoders to brain MR), another window of the
  same family, a side whose scale is ``stored`` or not recorded (nothing to compare), and different voxel
  sizes where both were resampled (legitimately usable; structures appear at another scale).
Dimensions and channels are checked where the weights are loaded (``runio.checked_backbone_spec``).

Modalities are those the items know (DICOM, MSD, a manifest's column); an item of unknown modality scaled with
a CT window counts as CT, one scaled by ``mr`` percentiles as MR (the option states what the user holds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medssl.errors import MedsslError

if TYPE_CHECKING:
    from medssl.data.preprocess import Prepared

STORED = "stored"
MINMAX = "minmax"
PERCENTILE = "mr"
# a manifest's free-text modality column, in DICOM's terms (the ones DICOM series and MSD folders give)
MODALITY_ALIASES = {"MRI": "MR", "PET": "PT", "XRAY": "CR", "X-RAY": "CR"}


@dataclass(frozen=True)
class Conventions:
    intensity: tuple[str, ...]  # the distinct intensity conventions of the items, sorted
    modalities: tuple[str, ...] = ()  # modalities known or implied (see the module doc), sorted
    spacing: tuple[float, ...] | None = None  # voxel size (mm) volumes were resampled to; None: native/unknown

    def to_dict(self) -> dict:
        return {"intensity": list(self.intensity), "modalities": list(self.modalities),
                "spacing": None if self.spacing is None else list(self.spacing)}

    @classmethod
    def from_dict(cls, data: object) -> Conventions | None:
        """The conventions a run or package recorded; None when absent or unreadable."""
        if not isinstance(data, dict) or not isinstance(data.get("intensity"), list) or not data["intensity"]:
            return None
        spacing = data.get("spacing")
        try:
            return cls(tuple(str(c) for c in data["intensity"]), tuple(str(m) for m in data.get("modalities") or ()),
                       None if spacing is None else tuple(float(s) for s in spacing))
        except (TypeError, ValueError):
            return None


def stored(modalities: Iterable[str] = ()) -> Conventions:
    """Arrays kept at their files' own scale (npz, 8-bit pictures, synthetic data)."""
    return Conventions((STORED,), tuple(sorted(set(modalities))))


def item_intensity(intensity_option: str | None, modality: str | None, kept_as_stored: bool) -> str:
    """The convention ``preprocess`` applied to one item (see ``preprocess._to_255``)."""
    from medssl.data.preprocess import intensity_range

    if intensity_option is None:
        return STORED if kept_as_stored else MINMAX
    window = intensity_range(intensity_option, modality)
    if window is None:
        return PERCENTILE
    kind = intensity_option.strip().lower().partition(":")[0]
    return f"{kind}:{window[0]:g},{window[1]:g}"


def implied_modality(intensity: str, modality: str | None) -> str | None:
    if modality and modality.strip():
        name = modality.strip().upper()
        return MODALITY_ALIASES.get(name, name)
    if intensity.startswith("ct:"):
        return "CT"
    return "MR" if intensity == PERCENTILE else None


def of_items(pairs: Iterable[tuple[str, str | None]], spacing: tuple[float, ...] | None) -> Conventions:
    """Conventions of a dataset from its items' (intensity convention, modality) pairs."""
    pairs = list(pairs)
    modalities = {m for m in (implied_modality(c, m) for c, m in pairs) if m}
    return Conventions(tuple(sorted({c for c, _ in pairs})), tuple(sorted(modalities)), spacing)


def _family(convention: str) -> str:
    return "fixed" if convention.startswith(("ct:", "range:")) else convention


def describe(convention: str) -> str:
    kind, _, bounds = convention.partition(":")
    low, _, high = bounds.partition(",")
    if kind == "ct":
        return f"a CT window of {low}..{high} HU"
    if kind == "range":
        return f"the fixed range {low}..{high}"
    return {PERCENTILE: "0.5-99.5 percentile scaling", MINMAX: "each image's own min..max",
            STORED: "the files' own values (not normalised by medssl)"}.get(convention, convention)


def _describe_all(conventions: Conventions) -> str:
    return " and ".join(describe(c) for c in conventions.intensity)


def _option_for(conventions: Conventions) -> str:
    """What to pass so that data is scaled the upstream's way."""
    fixed = [c for c in conventions.intensity if _family(c) == "fixed"]
    if fixed:
        return f"intensity {fixed[0]}"
    if PERCENTILE in conventions.intensity:
        return f"intensity {PERCENTILE}"
    return "no intensity option (per-image min..max)"


def check_upstream(upstream: Conventions | None, data: Conventions | None, where: str) -> list[str]:
    """Refuse (``MedsslError``) or warn (the returned lines) about fine-tuning on ``data`` an encoder
    pre-trained on data of the ``upstream`` conventions; ``where`` names the upstream (a run dir, a package).
    See the module doc for which mismatch is which."""
    if data is None:
        return []
    if upstream is None:
        return [f"{where} records no data conventions (pre-trained by an older medssl, or on arrays given"
                " directly): intensity and spacing not checked"]
    warnings = []
    if upstream.spacing is not None and data.spacing is not None and not _same_spacing(upstream.spacing,
                                                                                        data.spacing):
        warnings.append(f"{where} was pre-trained on volumes resampled to {_mm(upstream.spacing)} mm, the data here"
                        f" to {_mm(data.spacing)} mm: structures appear at another scale")
    if set(data.intensity) <= set(upstream.intensity):
        return warnings
    up_text, data_text = _describe_all(upstream), _describe_all(data)
    if upstream.modalities and data.modalities and not set(upstream.modalities) & set(data.modalities):
        warnings.append(f"cross-modality transfer: {where} was pre-trained on {'/'.join(upstream.modalities)}"
                        f" ({up_text}), the data here is {'/'.join(data.modalities)} ({data_text})")
        return warnings
    up_families = {_family(c) for c in upstream.intensity}
    data_families = {_family(c) for c in data.intensity}
    if STORED in up_families | data_families:
        warnings.append(f"{where} was pre-trained on intensities scaled by {up_text}, the data here by {data_text}:"
                        " the scales cannot be compared")
    elif data_families <= up_families:
        warnings.append(f"{where} was pre-trained on intensities scaled by {up_text}, the data here by"
                        f" {data_text}: another window of the same kind")
    else:
        raise MedsslError(f"{where} was pre-trained on intensities scaled by {up_text} but the data here is scaled"
                          f" by {data_text}: load it with {_option_for(upstream)}, as the upstream was")
    return warnings


def _same_spacing(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    a3, b3 = (a * 3 if len(a) == 1 else a), (b * 3 if len(b) == 1 else b)
    return len(a3) == len(b3) and all(math.isclose(x, y, rel_tol=0.01) for x, y in zip(a3, b3, strict=True))


def _mm(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:g}" for s in spacing)


def of_prepared(prepared: Iterable[Prepared], resized: bool) -> Conventions | None:
    """Conventions of preprocessed items (decoded now or read from a cache); None when a cache built by an
    older medssl did not record them. ``resized``: volumes were resized to a size, so no spacing holds."""
    prepared = list(prepared)
    if any(p.intensity is None for p in prepared):
        return None
    targets = {p.resampled_to for p in prepared}
    spacing = targets.pop() if len(targets) == 1 and not resized else None
    return of_items(((p.intensity, p.item.modality) for p in prepared), spacing)
