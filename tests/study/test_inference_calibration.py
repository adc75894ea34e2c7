"""The verdict rule, checked on simulated studies: few false calls under no effect, real effects called.

Each simulation is one comparison with seed noise (~0.03 AUC between seeds) and a 150-image test set; the
rule must call a null difference at most 5 % of the time (plus twice the Monte Carlo error), at 3, 5 and 10
seeds. The replaced rule (percentile bootstrap of per-seed differences) runs on the same simulations and must
fail, which proves the check can fail.
"""

from __future__ import annotations

import pytest

from medssl.study.calibration import Design, calibrate, monte_carlo_error

SIMULATIONS = 300
RESAMPLES = 100


@pytest.mark.parametrize("design", [Design(seeds=3), Design(seeds=5), Design(seeds=10),
                                    Design(seeds=3, seed_sd=0.3, test_images=300)],  # seed noise ~0.05 AUC
                         ids=["3 seeds", "5 seeds", "10 seeds", "3 seeds, seed noise dominant"])
def test_null_studies_are_called_at_most_five_percent_of_the_time(design):
    result = calibrate(design, SIMULATIONS, resamples=RESAMPLES, seed=design.seeds)
    limit = 0.05 + 2 * monte_carlo_error(0.05, SIMULATIONS)
    assert result.call_rate <= limit, result
    assert result.coverage >= 0.95 - 2 * monte_carlo_error(0.05, SIMULATIONS), result
    if design.seeds == 3:  # the replaced rule on the same studies: "all three differences share a sign"
        assert result.todays_rule_call_rate > 0.15, result


def test_a_realistic_effect_is_called_with_ten_seeds():
    design = Design(seeds=10, effect=0.6)
    assert 0.07 < design.true_difference < 0.09  # about +0.08 AUC
    result = calibrate(design, 100, resamples=RESAMPLES, seed=1)
    assert result.call_rate >= 0.7, result
    assert result.coverage >= 0.85, result
