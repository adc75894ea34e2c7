"""Calibration of the study verdict rule on simulated studies, one JSON line per design (number of seeds).

    python benchmarks/verdict_calibration.py [--simulations 2000] [--resamples 200]

Each simulated study compares two arms on a 150-image test set (30 % positives) with ~0.03 AUC of seed noise
(``medssl.study.calibration.Design``). ``false_call_rate``: verdicts under no effect; ``ci_coverage``: share of
95 % intervals holding the true difference (null designs); ``power``: verdicts when the method arm is truly
better by ``true_effect_auc``. The replaced rule (``todays_rule_*``) and a naive percentile hierarchical
bootstrap (``percentile_hierarchical_*``) are scored on the same simulations for contrast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from medssl.study.calibration import Design, calibrate, monte_carlo_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=200, help="test-set bootstrap replicates per study")
    parser.add_argument("--effect", type=float, default=0.6, help="separation added to the method arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    args = parser.parse_args()
    for seeds in args.seeds:
        started = time.perf_counter()
        null = calibrate(Design(seeds=seeds), args.simulations, resamples=args.resamples, seed=seeds)
        real = Design(seeds=seeds, effect=args.effect)
        effect = calibrate(real, args.simulations // 2, resamples=args.resamples, seed=1000 + seeds)
        print(json.dumps({
            "seeds": seeds, "false_call_rate": round(null.call_rate, 4), "ci_coverage": round(null.coverage, 4),
            "power": round(effect.call_rate, 4), "true_effect_auc": round(real.true_difference, 4),
            "ci_coverage_under_effect": round(effect.coverage, 4),
            "mc_error": round(monte_carlo_error(0.05, args.simulations), 4),
            "todays_rule_false_call_rate": round(null.todays_rule_call_rate, 4),
            "percentile_hierarchical_false_call_rate": round(null.percentile_hierarchical_call_rate, 4),
            "simulations": args.simulations, "power_simulations": args.simulations // 2,
            "resamples": args.resamples, "test_images": real.test_images,
            "seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu(s)",
        }), flush=True)


if __name__ == "__main__":
    main()
