"""estimators: log Z and log-likelihood with their uncertainty (imports ``samplers`` and ``ebm``)."""

from estimators import schedules
from estimators.ais import ais
from estimators.bounds import mean_field_bound
from estimators.bridge import bennett, bridge
from estimators.calibration import Coverage, ais_coverage
from estimators.conditional import exact_conditional_log_likelihood
from estimators.conditional_ais import ais_log_likelihood
from estimators.dbn import dbn_log_likelihood
from estimators.documents import document_log_likelihood, log_z_by_length, perplexity
from estimators.elimination import elimination_log_z
from estimators.estimate import Estimate, log_mean_exp
from estimators.exact import exact_log_z, exact_samples
from estimators.likelihood import log_likelihood
from estimators.moments import moment_averaged_path
from estimators.reverse import reverse_ais, sandwich
from estimators.topics import lda_log_likelihood

__all__ = [
    "Coverage",
    "Estimate",
    "ais_coverage",
    "ais",
    "ais_log_likelihood",
    "dbn_log_likelihood",
    "bennett",
    "bridge",
    "document_log_likelihood",
    "elimination_log_z",
    "exact_conditional_log_likelihood",
    "exact_log_z",
    "exact_samples",
    "log_likelihood",
    "log_mean_exp",
    "lda_log_likelihood",
    "log_z_by_length",
    "mean_field_bound",
    "moment_averaged_path",
    "perplexity",
    "reverse_ais",
    "sandwich",
    "schedules",
]
