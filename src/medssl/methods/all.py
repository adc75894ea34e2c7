"""Importing this module registers every method: each module in a family package is imported once."""

import importlib
import pkgutil

from medssl.methods import contrastive, generative, predictive

for _family in (contrastive, generative, predictive):
    for _module in pkgutil.iter_modules(_family.__path__):
        importlib.import_module(f"{_family.__name__}.{_module.name}")
