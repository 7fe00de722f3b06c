"""The annealing runtime: the loop over betas every annealing estimator runs, apart from its maths.

``anneal(step, state, num_betas, generator, ...)`` applies ``state = step(state, k)`` for
k = first, ..., num_betas - 1, with a progress bar and, given an ``AnnealingCheckpoint``, saves
that survive an interruption: the state at the top of an iteration (a dict name -> tensor that the
step does not modify in place), the next k and the generator's state are written every ``every``
seconds, when the run is interrupted (Ctrl-C) and at its end, and a run started with an existing
file resumes from it, so its result is the one an uninterrupted run gives. Sharding a run over
processes is the other wrapper any annealing loop can use (``estimators.distributed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ebm.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["AnnealingCheckpoint", "anneal"]

State = dict[str, Tensor]


@dataclass
class AnnealingCheckpoint:
    """Where and how often an annealing run saves itself. ``kind`` and ``key`` (a fingerprint of
    the model, the schedule and whatever else makes it the same run, ``ebm.checkpoint.fingerprint``)
    are checked on resume: a file of another run is refused with ValueError."""

    path: Path
    kind: str
    key: str
    every: float = 60.0

    def __post_init__(self):
        self.path = Path(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, state: State, next_k: int, rng_state: Tensor) -> None:
        tensors = {f"state.{name}": t for name, t in state.items()}
        tensors["rng"] = rng_state
        meta = {"kind": self.kind, "key": self.key, "next": next_k}
        save_checkpoint(self.path, tensors, meta)

    def load(self, generator: torch.Generator) -> tuple[State, int]:
        """(the saved state on the CPU, the next k); the generator is set to the saved state."""
        tensors, meta = load_checkpoint(self.path)
        if meta.get("kind") != self.kind or meta.get("key") != self.key:
            raise ValueError(
                f"{self.path} holds a {meta.get('kind', 'different')} run of another model, base, "
                f"schedule or number of chains; delete it or pass another checkpoint file"
            )
        generator.set_state(tensors["rng"])
        state = {k[len("state.") :]: t for k, t in tensors.items() if k.startswith("state.")}
        return state, int(meta["next"])


def anneal(
    step: Callable[[State, int], State],
    state: State,
    num_betas: int,
    generator: torch.Generator | None,
    first: int = 1,
    checkpoint: AnnealingCheckpoint | None = None,
    progress: bool = False,
    desc: str = "anneal",
    postfix: Callable[[State], dict] | None = None,
) -> State:
    """``state = step(state, k)`` for k = first, ..., num_betas - 1; returns the final state.

    ``step`` must leave the tensors of the state it is given intact (it may return tensors it
    keeps elsewhere, as a double buffer), so the state at the top of each iteration is a
    consistent snapshot. With ``checkpoint`` (which needs ``generator``) the snapshot is saved
    every ``checkpoint.every`` seconds, when the loop is interrupted (then KeyboardInterrupt is
    raised again, after a message saying where the state went) and after the last step.
    ``postfix``: a function of the state giving what the progress bar shows, every 200 steps."""
    if checkpoint is not None and generator is None:
        raise ValueError("a checkpointed run needs its generator (to save and restore its state)")
    bar = tqdm(
        total=num_betas - 1,
        initial=first - 1,
        desc=desc,
        unit="beta",
        disable=not progress,
        leave=False,
        mininterval=0.5,
    )
    last_save = time.perf_counter()
    snapshot = None  # (state, k, generator state) at the top of an iteration
    try:
        for k in range(first, num_betas):
            if checkpoint is not None:
                snapshot = (state, k, generator.get_state())
                if time.perf_counter() - last_save > checkpoint.every:
                    checkpoint.save(*snapshot)
                    last_save = time.perf_counter()
            state = step(state, k)
            if progress and k % 200 == 0:
                bar.update(k - bar.n)
                if postfix is not None:
                    bar.set_postfix(**postfix(state))
    except KeyboardInterrupt:
        if snapshot is not None:
            checkpoint.save(*snapshot)
            bar.write(
                f"{desc} interrupted at beta {snapshot[1]} of {num_betas - 1}; state saved to "
                f"{checkpoint.path}: run it again with the same checkpoint file to resume"
            )
        raise
    finally:
        bar.close()
    if checkpoint is not None:
        checkpoint.save(state, num_betas, generator.get_state())
    return state
