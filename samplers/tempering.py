"""Parallel tempering with non-reversible (deterministic even/odd) swaps and a ladder tuned to
equalise the swap rejection rates (Syed, Bouchard-Cote, Deligiannidis & Doucet 2021)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from ebm.model import EnergyModel
from samplers.kernel import Kernel, StepInfo, check_num_chains
from samplers.sweep import gibbs_sweep

__all__ = ["ParallelTempering", "equal_rejection_ladder"]

State = dict[str, Tensor]


def equal_rejection_ladder(betas, rejection, num: int | None = None) -> np.ndarray:
    """A new ladder of ``num`` inverse temperatures (default: as many as ``betas``) from 0 to 1
    that equalises the swap rejection rates.

    With r_k the rejection rate between beta_k and beta_k+1, the communication barrier
    Lambda(beta) is estimated by the piecewise-linear interpolation of the cumulative sums
    Lambda(beta_k) = sum_{j<k} r_j; the new beta_i = Lambda^-1(i Lambda(1) / (num - 1)), so every
    adjacent pair rejects about Lambda(1) / (num - 1) of its swaps (Syed et al. 2021, section 5).
    """
    betas = np.asarray(betas, dtype=np.float64)
    rejection = np.clip(np.asarray(rejection, dtype=np.float64), 0.0, 1.0)
    if betas.ndim != 1 or len(betas) < 2 or len(rejection) != len(betas) - 1:
        raise ValueError("need betas (n,) and the rejection rates of their n - 1 adjacent pairs")
    num = len(betas) if num is None else int(num)
    if num < 2:
        raise ValueError(f"a ladder needs at least 2 temperatures, got {num}")
    # a floor keeps Lambda strictly increasing, so its inverse is defined everywhere
    barrier = np.concatenate([[0.0], np.cumsum(rejection + 1e-6)])
    levels = np.linspace(0.0, barrier[-1], num)
    new = np.interp(levels, barrier, betas)
    new[0], new[-1] = betas[0], betas[-1]
    return new


class ParallelTempering(Kernel):
    """Parallel tempering over the tempered densities

        p_beta(x) proportional to exp(-beta sum_f E_f(x) - sum_u E_0,u(x_u)),
        0 = beta_0 < beta_1 < ... < beta_{R-1} = 1

    (the factors are tempered, the unit base energies are not, so every p_beta is normalisable;
    at beta = 0 the units are independent and a Gibbs sweep draws them exactly). Every chain
    carries R replicas, one per temperature, stored as one batch of R x chains rows (replica r
    in rows r*chains .. (r+1)*chains - 1), so one tempered block Gibbs sweep (natural parameters
    and quadratic terms scaled by each row's beta) updates all of them at once.

    After the sweep, adjacent replicas propose to swap states with probability

        min(1, exp((beta_k - beta_{k+1}) (E(x_k) - E(x_{k+1})))),   E = the tempered factor energy,

    non-reversibly (Okabe et al. 2001; Syed et al. 2021): even steps try the pairs (0,1), (2,3),
    ..., odd steps (1,2), (3,4), ... (deterministic even/odd, DEO). Each move leaves the product of
    the p_beta invariant, so the beta = 1 replicas (``target(state)``) sample p(x).

    The ladder: ``betas`` (increasing from 0 to 1) or ``num_temperatures`` spaced evenly; with
    ``tune_rounds`` > 0, ``warmup`` re-spaces it round after round (round n runs 2^n x
    ``tune_sweeps`` steps) so that the swap rejection rates are equal
    (``equal_rejection_ladder``). Diagnostics: ``swap_rates`` (per pair, mean acceptance
    probability since the last reset), ``barrier`` (Lambda, the sum of rejection rates; DEO needs
    about 2 Lambda temperatures) and ``round_trips`` (replicas that went from beta = 0 to
    beta = 1 and back; with enough temperatures DEO's rate per step and chain approaches
    1 / (2 + 2 Lambda)). A ``samplers.kernel.Kernel``: each step's info holds each chain's mean
    swap acceptance probability, the pairs' swap acceptance, the round trips completed and the
    ladder; ``cost`` = R: one step costs R sweeps of the model.
    """

    def __init__(
        self,
        model: EnergyModel,
        num_temperatures: int = 8,
        betas: Iterable[float] | None = None,
        tune_rounds: int = 4,
        tune_sweeps: int = 16,
        generator: torch.Generator | None = None,
    ):
        self.model = model
        self.generator = generator
        for b in model.blocks:
            if model.nonlinear_factors(b):
                raise ValueError(
                    f"block {b!r} has factors that are not linear in it "
                    f"({model.nonlinear_factors(b)}): its tempered conditional cannot be drawn"
                )
        if betas is None:
            if isinstance(num_temperatures, bool) or int(num_temperatures) < 2:
                raise ValueError(f"num_temperatures must be >= 2, got {num_temperatures!r}")
            betas = np.linspace(0.0, 1.0, int(num_temperatures))
        betas = np.asarray(list(betas), dtype=np.float64)
        if (
            betas.ndim != 1
            or len(betas) < 2
            or betas[0] != 0.0
            or betas[-1] != 1.0
            or (np.diff(betas) <= 0).any()
        ):
            raise ValueError("betas must increase strictly from 0 to 1")
        self.betas = betas
        self.tune_rounds, self.tune_sweeps = int(tune_rounds), int(tune_sweeps)
        self.num_chains: int | None = None
        self.steps = 0
        self.reset_statistics()

    @property
    def num_temperatures(self) -> int:
        return len(self.betas)

    @property
    def cost(self) -> int:
        """Model sweeps per step."""
        return self.num_temperatures

    def reset_statistics(self) -> None:
        """Forget the swap and round-trip counts (the ladder and the states are kept)."""
        pairs = self.num_temperatures - 1
        self._accept_sum = np.zeros(pairs)
        self._attempts = np.zeros(pairs)
        self.round_trips = 0
        if self.num_chains is not None:
            r, c = self.num_temperatures, self.num_chains
            self._phase = torch.zeros(r, c, dtype=torch.int8)
            self._phase[0] = 1

    @property
    def swap_rates(self) -> np.ndarray:
        """Mean swap acceptance probability of each adjacent pair since the last reset."""
        with np.errstate(invalid="ignore"):
            return self._accept_sum / self._attempts

    @property
    def barrier(self) -> float:
        """Lambda = the sum of the pairs' rejection rates (the global communication barrier)."""
        return float(np.nansum(1.0 - self.swap_rates))

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> State:
        """Every replica of ``num_chains`` chains uniform at random (R x chains rows)."""
        check_num_chains(num_chains)
        if generator is not None:
            self.generator = generator
        self.num_chains = num_chains
        self.steps = 0
        self.reset_statistics()
        m, rows = self.model, self.num_temperatures * num_chains
        return {
            b: m.units[b].random(rows, self.generator, device=m.device, dtype=m.dtype)
            for b in m.blocks
        }

    def target(self, state: State) -> State:
        """The beta = 1 replicas: a state of ``num_chains`` rows that samples p(x)."""
        c = self._chains(state)
        return {b: x[-c:] for b, x in state.items()}

    def _chains(self, state: State) -> int:
        rows = next(iter(state.values())).shape[0]
        if self.num_chains is None or rows != self.num_temperatures * self.num_chains:
            raise ValueError(
                f"the state has {rows} rows; expected {self.num_temperatures} temperatures x "
                f"{self.num_chains} chains from init()"
            )
        return self.num_chains

    def _row_betas(self, like: Tensor) -> Tensor:
        b = torch.as_tensor(self.betas, dtype=like.dtype, device=like.device)
        return b.repeat_interleave(self.num_chains)

    def factor_energy(self, state: State) -> Tensor:
        """sum_f E_f(x) per row (the tempered part of the energy)."""
        m = self.model
        stats = m.statistics(state)
        e = 0.0
        for f in m.factors.values():
            e = e + f.energy(stats)
        return e

    def sweep(self, state: State) -> State:
        """One tempered block Gibbs sweep over all replicas, each row at its beta
        (``samplers.sweep.gibbs_sweep``)."""
        beta = self._row_betas(next(iter(state.values())))
        return gibbs_sweep(self.model, state, self.model.schedule, self.generator, beta=beta)

    def swap(self, state: State) -> tuple[State, StepInfo]:
        """One round of DEO swaps (even or odd pairs by the step's parity): (the new state, the
        round's info: each chain's mean acceptance probability over the pairs tried, each
        pair's mean over the chains (NaN where not tried), the round trips completed)."""
        r, c = self.num_temperatures, self._chains(state)
        energy = self.factor_energy(state).double().reshape(r, c)
        first = np.arange(self.steps % 2, r - 1, 2)
        pairs = np.full(r - 1, np.nan)
        if len(first) == 0:
            return state, StepInfo(cost=r, swap_accept=pairs, betas=self.betas.copy())
        lo = torch.as_tensor(first, device=energy.device)
        d_beta = torch.as_tensor(self.betas[first] - self.betas[first + 1], device=energy.device)
        log_ratio = d_beta.unsqueeze(1) * (energy[lo] - energy[lo + 1])
        prob = log_ratio.clamp(max=0.0).exp()
        u = torch.rand(prob.shape, generator=self.generator, device=prob.device, dtype=prob.dtype)
        accept = u < prob  # (pairs, chains)
        pairs[first] = prob.mean(1).cpu().numpy()
        self._accept_sum[first] += pairs[first]
        self._attempts[first] += 1
        # the permutation of replica positions: swap k and k+1 where accepted
        order = torch.arange(r, device=energy.device).unsqueeze(1).repeat(1, c)
        columns = torch.arange(c, device=energy.device)
        for i, k in enumerate(first):
            a = accept[i]
            order[k, a], order[k + 1, a] = k + 1, k
        rows = (order * c + columns).reshape(-1)
        out = {b: x[rows] for b, x in state.items()}
        trips = self._track(order.cpu())
        info = StepInfo(
            cost=r,
            accept=prob.mean(0),
            swap_accept=pairs,
            round_trips=trips,
            betas=self.betas.copy(),
        )
        return out, info

    def _track(self, order: Tensor) -> int:
        """Follow each replica's phase through a swap and count the round trips it completes
        (bottom -> top -> bottom); returns that count. Phase: 0 not yet at the bottom, 1 last
        extreme the bottom, 2 on its way back from the top."""
        self._phase = torch.gather(self._phase, 0, order)
        top = self._phase[-1]
        top[top == 1] = 2
        bottom = self._phase[0]
        trips = int((bottom == 2).sum())
        self.round_trips += trips
        bottom.fill_(1)
        return trips

    @torch.no_grad()
    def step(self, state: State) -> tuple[State, StepInfo]:
        """A tempered sweep of every replica, then one round of DEO swaps: (the new state, the
        swaps' info)."""
        self._chains(state)
        state, info = self.swap(self.sweep(state))
        self.steps += 1
        return state, info

    def warmup(self, state: State, num_steps: int) -> State:
        """Tune the ladder (``tune_rounds`` rounds, round n: 2^n x ``tune_sweeps`` steps, then
        ``equal_rejection_ladder``) while moving the chains, then spend what is left of
        ``num_steps`` at the tuned ladder; the statistics are reset at the end."""
        done = 0
        for n in range(self.tune_rounds):
            steps = (2**n) * self.tune_sweeps
            if done + steps > num_steps:
                break
            self.reset_statistics()
            for _ in range(steps):
                state, _ = self.step(state)
            done += steps
            self.betas = equal_rejection_ladder(self.betas, 1.0 - self.swap_rates)
        for _ in range(num_steps - done):
            state, _ = self.step(state)
        self.reset_statistics()
        return state

    def __repr__(self) -> str:
        return f"ParallelTempering(num_temperatures={self.num_temperatures})"
