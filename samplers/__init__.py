"""samplers: MCMC kernels and runners over ``ebm`` models (imports ``ebm`` only)."""

from samplers.contrastive import CD, PCD, MeanFieldPCD
from samplers.gibbs import BlockGibbs
from samplers.observers import RunningMean, Trace

__all__ = ["BlockGibbs", "CD", "PCD", "MeanFieldPCD", "RunningMean", "Trace"]
