import numpy as np
import pytest

from medssl.data.subsets import fraction_subset, imbalance_subset
from medssl.errors import MedsslError

LABELS = np.array([0] * 700 + [1] * 250 + [2] * 50)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fraction_subsets_are_nested_for_one_seed(seed):
    small, medium, full = (set(fraction_subset(LABELS, f, seed)) for f in (0.01, 0.1, 1.0))
    assert small <= medium <= full
    assert full == set(range(len(LABELS)))


def test_fraction_subset_is_stratified_and_keeps_every_class():
    chosen = fraction_subset(LABELS, 0.1, seed=3)
    counts = np.bincount(LABELS[chosen], minlength=3)
    assert counts.tolist() == [70, 25, 5]
    tiny = fraction_subset(LABELS, 0.003, seed=3)  # 0.003 * 50 rounds to 0: bumped to one example
    assert np.bincount(LABELS[tiny], minlength=3).min() >= 1


def test_fraction_subset_is_seeded():
    assert np.array_equal(fraction_subset(LABELS, 0.1, 5), fraction_subset(LABELS, 0.1, 5))
    assert not np.array_equal(fraction_subset(LABELS, 0.1, 5), fraction_subset(LABELS, 0.1, 6))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_rejected(fraction):
    with pytest.raises(MedsslError, match="label fraction"):
        fraction_subset(LABELS, fraction, 0)


def test_fraction_too_small_for_one_example_per_class_is_rejected():
    with pytest.raises(MedsslError, match="fewer than one per class"):
        fraction_subset(LABELS, 0.001, 0)


def test_imbalance_subset_reaches_the_target_ratio_and_nests():
    labels = np.array([0] * 400 + [1] * 200)
    ratio_4 = imbalance_subset(labels, 4.0, seed=0)
    ratio_10 = imbalance_subset(labels, 10.0, seed=0)
    assert np.bincount(labels[ratio_4]).tolist() == [400, 100]
    assert np.bincount(labels[ratio_10]).tolist() == [400, 40]
    assert set(ratio_10) <= set(ratio_4)


def test_imbalance_ratio_below_one_is_rejected():
    labels = np.array([0] * 400 + [1] * 200)
    with pytest.raises(MedsslError, match=">= 1"):
        imbalance_subset(labels, 0.5, 0)


def test_ratio_below_the_natural_one_subsamples_the_majority_down_to_it():
    labels = np.array([0] * 400 + [1] * 200 + [2] * 300)
    balanced = imbalance_subset(labels, 1.0, seed=0)
    assert np.bincount(labels[balanced]).tolist() == [200, 200, 200]  # the minority (1) whole, the rest cut
    one_and_a_half = imbalance_subset(labels, 1.5, seed=0)
    assert np.bincount(labels[one_and_a_half]).tolist() == [300, 200, 300]
    assert set(balanced) <= set(one_and_a_half)  # nested below the natural ratio too
    assert not np.array_equal(balanced, imbalance_subset(labels, 1.0, seed=1))  # seeded
