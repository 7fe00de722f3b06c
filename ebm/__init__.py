"""ebm: declare energy-based models as factor graphs (networkx) and train them (torch).

Layers: ``ebm`` (graphs, unit types, factors, models, data, training) sits below ``samplers``
(MCMC kernels) and ``estimators`` (log Z and log-likelihood); it never imports them.
"""

from ebm import (
    backend,
    chains,
    corpora,
    counts,
    datasets,
    dbn,
    documents,
    factors,
    inference,
    jax_export,
    models,
    plots,
    profiling,
    rectified,
    units,
)
from ebm.base import FactorizedBase, base_rate, mean_field_base
from ebm.deep import pretrain_dbm
from ebm.graph import Graph
from ebm.io import load, save
from ebm.model import EnergyModel
from ebm.precision import full_precision, reduced_precision
from ebm.score_matching import fit_score_matching, fit_upoe_greedily, score_matching_loss
from ebm.training import History, exponential_decay, fit, linear_decay, momentum_switch

__version__ = "0.1.0"

__all__ = [
    "backend",
    "Graph",
    "EnergyModel",
    "FactorizedBase",
    "History",
    "base_rate",
    "chains",
    "corpora",
    "counts",
    "datasets",
    "dbn",
    "documents",
    "factors",
    "fit",
    "fit_score_matching",
    "fit_upoe_greedily",
    "full_precision",
    "inference",
    "jax_export",
    "linear_decay",
    "exponential_decay",
    "momentum_switch",
    "mean_field_base",
    "load",
    "models",
    "plots",
    "pretrain_dbm",
    "profiling",
    "rectified",
    "reduced_precision",
    "save",
    "score_matching_loss",
    "units",
]
