"""Evaluation beyond fine-tuned accuracy: frozen-feature kNN and linear probes, retrieval, robustness to
corruptions, calibration and embedding maps. ``medssl.evaluate.run.evaluate`` is the notebook entry."""
