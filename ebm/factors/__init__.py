"""Factors: energy terms over one or more blocks. See :class:`ebm.factors.Factor`."""

from ebm.factors.base import FACTOR_TYPES, Factor, natural_from_energy, register
from ebm.factors.bias import Bias
from ebm.factors.dense import Dense

__all__ = ["Factor", "Bias", "Dense", "natural_from_energy", "register", "FACTOR_TYPES"]
