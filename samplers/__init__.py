"""samplers: MCMC kernels and runners over ``ebm`` models (imports ``ebm`` only)."""

from samplers.compare import Comparison, compare
from samplers.contrastive import CD, HMCCD, PCD, MeanFieldPCD, ScaledCopyCD, SharedCopiesCD
from samplers.gibbs import BlockGibbs
from samplers.hmc import BatchedHMC, hmc_step
from samplers.kernel import Kernel, StepInfo
from samplers.metropolis import Metropolis
from samplers.numpyro_mcmc import NumPyroNUTS
from samplers.observers import RunningMean, Trace
from samplers.pyro_mcmc import HMC, NUTS
from samplers.runner import RunInfo, run_chain
from samplers.tempering import ParallelTempering

__all__ = [
    "Kernel",
    "StepInfo",
    "RunInfo",
    "run_chain",
    "BatchedHMC",
    "HMC",
    "NUTS",
    "NumPyroNUTS",
    "hmc_step",
    "BlockGibbs",
    "Comparison",
    "compare",
    "Metropolis",
    "ParallelTempering",
    "CD",
    "SharedCopiesCD",
    "ScaledCopyCD",
    "PCD",
    "MeanFieldPCD",
    "HMCCD",
    "RunningMean",
    "Trace",
]
