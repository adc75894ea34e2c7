"""Downstream tasks, one package each (classify, segment, detect, anomaly), found through ``tasks.registry``."""
