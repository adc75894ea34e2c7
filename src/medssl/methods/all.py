"""Importing this module registers every method."""

from medssl.methods.contrastive import simclr
from medssl.methods.generative import genesis
from medssl.methods.predictive import rotation

__all__ = ["genesis", "rotation", "simclr"]
