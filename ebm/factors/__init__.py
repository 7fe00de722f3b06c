"""Factors: energy terms over one or more blocks. See :class:`ebm.factors.Factor`."""

from ebm.factors.base import FACTOR_TYPES, Factor, natural_from_energy, register
from ebm.factors.bias import Bias
from ebm.factors.covariance import CovariancePooling
from ebm.factors.dense import Dense
from ebm.factors.emission import BernoulliEmission, CategoricalEmission, GaussianEmission
from ebm.factors.experts import ProjectedStudentT
from ebm.factors.higher_order import HigherOrder
from ebm.factors.markov import InitialState, Transition
from ebm.factors.pairwise import Pairwise
from ebm.factors.replicated import LengthScaledBias, SharedBias, SharedDense
from ebm.factors.student import StudentT
from ebm.factors.three_way import Factored3Way, ThirdOrder
from ebm.factors.tied import TiedBias, TiedDense

__all__ = [
    "Factor",
    "Bias",
    "Dense",
    "Pairwise",
    "HigherOrder",
    "ThirdOrder",
    "Factored3Way",
    "CovariancePooling",
    "StudentT",
    "ProjectedStudentT",
    "TiedDense",
    "BernoulliEmission",
    "CategoricalEmission",
    "GaussianEmission",
    "InitialState",
    "Transition",
    "TiedBias",
    "LengthScaledBias",
    "SharedDense",
    "SharedBias",
    "natural_from_energy",
    "register",
    "FACTOR_TYPES",
]
