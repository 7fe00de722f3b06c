"""thrml running the same model exported to it (``ebm.thrml_export``), for throughput comparisons.

``thrml_sweeps_per_second(model, num_chains, num_sweeps)`` exports the model, runs one warm-up
call of ``num_sweeps`` sweeps (which compiles the program for that number of sweeps and chain
count), then times one more call of ``num_sweeps`` sweeps over ``num_chains`` independent chains
(until the result is ready) and returns sweeps per second (one sweep: every colour class of the
model's schedule updated once, in every chain). Needs thrml (``pip install thrml``).
"""

from __future__ import annotations

import time

from ebm.model import EnergyModel
from ebm.thrml_export import to_thrml

__all__ = ["thrml_sweeps_per_second"]


def thrml_sweeps_per_second(
    model: EnergyModel, num_chains: int, num_sweeps: int, seed: int = 0
) -> float:
    """Sweeps per second of thrml's block Gibbs on ``model`` over ``num_chains`` chains, timed over
    ``num_sweeps`` sweeps after a warm-up of as many (compilation included there, not here)."""
    import jax

    if num_chains < 1 or num_sweeps < 1:
        raise ValueError("num_chains and num_sweeps must be >= 1")
    exported = to_thrml(model)
    k_init, k_warm, k_time = jax.random.split(jax.random.key(seed), 3)
    state = exported.init(k_init, num_chains)
    state = jax.block_until_ready(exported.run(k_warm, state, num_sweeps))
    start = time.perf_counter()
    state = jax.block_until_ready(exported.run(k_time, state, num_sweeps))
    return num_sweeps / (time.perf_counter() - start)
