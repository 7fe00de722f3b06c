"""Negative-phase samplers for training: contrastive divergence and persistent chains.

Each drives a ``samplers.kernel.Kernel`` (block Gibbs by default, batched HMC for ``HMCCD``) with
the runner every sampler uses (``samplers.runner.run_chain``); the kernel is built once per model
and reused from update to update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ebm.factors.tied import TiedDense
from ebm.inference import mean_field
from ebm.model import EnergyModel
from samplers.gibbs import BlockGibbs
from samplers.hmc import BatchedHMC
from samplers.kernel import Kernel, check_count, check_num_chains
from samplers.runner import run_chain

__all__ = ["CD", "SharedCopiesCD", "ScaledCopyCD", "PCD", "MeanFieldPCD", "HMCCD"]

KernelFactory = Callable[[EnergyModel], Kernel]


def _complete(model: EnergyModel, data: dict, generator) -> dict:
    """Fill the hidden blocks of a data state by one clamped sweep: x_h ~ p(x_h | v) where the
    hidden blocks are conditionally independent given the data (an RBM's h), else one Gibbs sweep
    from random hidden values."""
    n = next(iter(data.values())).shape[0]
    clamped = BlockGibbs(model, clamp=list(data), generator=generator)
    state = clamped.init(n, values=data)
    return clamped.step(state)[0]


class _KernelPerModel:
    """The kernel built by ``factory`` for the latest model asked for, reused while it is the
    same model object."""

    def __init__(self, factory: KernelFactory):
        self.factory = factory
        self.kernel: Kernel | None = None

    def __call__(self, model: EnergyModel, generator) -> Kernel:
        if self.kernel is None or self.kernel.model is not model:
            built = self.factory(model)
            if not isinstance(built, Kernel):
                raise TypeError(f"the kernel factory gave {built!r}, not a samplers.Kernel")
            self.kernel = built
        self.kernel.generator = generator
        return self.kernel


class CD:
    """Contrastive divergence CD-k (Hinton 2002): negative samples start at the data and take k
    block Gibbs sweeps. The resulting gradient is biased (the chains are far from equilibrium)
    but cheap; the bias shrinks as k grows.

    ``clamp``: blocks held at their data values in the negative phase. The gradient is then that
    of the conditional log-likelihood log p(free | clamped) (the clamped blocks' own terms
    cancel): how conditional models (gated RBM given x, CRBM given the past) are trained.

    ``kernel``: a class or function building the transition kernel from the model (default
    ``BlockGibbs(model, clamp=clamp)``); a kernel of your own holds its own clamped blocks."""

    def __init__(self, k: int = 1, clamp: Iterable[str] = (), kernel: KernelFactory | None = None):
        self.k = check_count(k, "k")
        self.clamp = [clamp] if isinstance(clamp, str) else list(clamp)
        if kernel is not None and self.clamp:
            raise ValueError(
                "give either clamp or kernel: a kernel you build clamps its own blocks"
            )
        clamp_list = self.clamp
        self._kernel = _KernelPerModel(kernel or (lambda m: BlockGibbs(m, clamp=clamp_list)))

    def positive(self, model: EnergyModel, data: dict, generator=None) -> dict:
        return _complete(model, data, generator)

    def negative(self, model: EnergyModel, data: dict, generator=None) -> dict:
        missing = [b for b in self.clamp if b not in data]
        if missing:
            raise ValueError(f"clamped blocks {missing} are not in the data ({sorted(data)})")
        state = _complete(model, data, generator)
        return run_chain(self._kernel(model, generator), state, self.k).state

    def __repr__(self) -> str:
        return f"CD(k={self.k}" + (f", clamp={self.clamp})" if self.clamp else ")")


class SharedCopiesCD:
    """CD-k for the layer RBMs of DBM pretraining as Salakhutdinov & Hinton's code runs it: a
    block holding several copies of a layer (``TiedDense`` copies) is drawn once per half-step and
    that one sample stands for every copy.

    For the bottom RBM (input doubled): h ~ sigma(2 W^T v + c) from the data, one v' ~
    sigma(W h + b) for both copies, and the loss F(v, v) - F(v', v') whose gradient is twice the
    single-copy gradient of the published code (v p(h | v)^T at the data minus at v'). For the
    top RBM (hidden layer doubled) one sample h of the top layer for both copies, so that
    v' ~ sigma(2 W h + b). The doubled p(h | v) and the single p(v | h) are not the conditionals
    of one joint distribution, so this is not Gibbs sampling of any model: a pretraining rule,
    biased like CD-k. With no copies it is ``CD(k)`` on an RBM (hidden blocks drawn first, then
    the visible ones).

    Measured against ``CD(k)`` (each copy drawn on its own) on the MNIST DBM 784-500-1000, 10 + 10
    pretraining and 10 joint epochs (docs/results.md): under the published rates the shared
    sample gave a test bound 12.6 nats higher (-120.97 against -133.61); under the smaller
    tied-copies rates the two agreed within 0.8 nats."""

    def __init__(self, k: int = 1):
        self.k = check_count(k, "k")

    @staticmethod
    def _copies(model: EnergyModel) -> dict[str, int]:
        copies: dict[str, int] = {}
        for factor in model.factors.values():
            if isinstance(factor, TiedDense):
                for block, count in zip(factor.blocks, factor.copies, strict=True):
                    copies[block] = max(copies.get(block, 1), count)
        return copies

    def negative(self, model: EnergyModel, data: dict, generator=None) -> dict:
        copies = self._copies(model)
        hidden = [b for b in model.blocks if b not in data]
        state = model.with_placeholders(dict(data), hidden)

        def draw(block: str) -> torch.Tensor:
            x = model.sample_block(block, state, generator)
            count = copies.get(block, 1)
            if count == 1:
                return x
            return x[:, : x.shape[1] // count].repeat(1, count)

        for _ in range(self.k):
            for block in hidden:
                state[block] = draw(block)
            for block in data:
                state[block] = draw(block)
        return state

    def __repr__(self) -> str:
        return f"SharedCopiesCD(k={self.k})"


class ScaledCopyCD:
    """CD-k for pretraining the over-replicated softmax (``ebm.models.over_replicated_softmax``)
    as Srivastava, Salakhutdinov & Hinton (2013) do: the hidden count block ``copy`` (h2, M words)
    is held at (M / D) v, the data's D-word counts v (block ``source``) scaled to M words, so that
    the first hidden layer sees the document as D + M words,

        p(h1 | v) = sigma((1 + M/D) W^T v + (D + M) a),

    while v' ~ Multinomial(D, softmax(W h1 + b)) as in a Replicated Softmax. The positive state
    is (v, h1 = p(h1 | v), h2 = (M/D) v); the negative one starts from a draw of h1 and takes k
    steps v' ~ p(v | h1), h2' = (M/D) v', h1 ~ p(h1 | v', h2'), ending with h1 at its
    probabilities. The loss E(positive) - E(negative) then has the RSM's CD-k gradient with the
    W and b terms scaled by 1 + M/D. Like ``SharedCopiesCD`` this is a pretraining rule, not Gibbs
    sampling of the model (h2 is never drawn), and biased like CD-k."""

    def __init__(self, k: int = 1, copy: str = "h2", source: str = "v"):
        self.k = check_count(k, "k")
        self.copy, self.source = copy, source

    def _scale(self, model: EnergyModel, counts: torch.Tensor) -> torch.Tensor:
        """(M / D) per row: the factor taking the source's counts to the copy's length."""
        if self.copy not in model.units or self.source not in model.units:
            raise ValueError(
                f"ScaledCopyCD needs blocks {self.copy!r} and {self.source!r}; the model has "
                f"{model.blocks}"
            )
        units, source = model.units[self.copy], model.units[self.source]
        length, k = getattr(units, "length", None), getattr(units, "k", None)
        if not isinstance(length, int) or k != getattr(source, "k", None):
            raise ValueError(
                f"ScaledCopyCD holds block {self.copy!r} at a scaled copy of {self.source!r}: "
                f"both must be Multinomial blocks over the same words, {self.copy!r} of a fixed "
                f"length (got {units!r} and {source!r})"
            )
        return length / counts.sum(-1, keepdim=True).clamp_min(1)

    def _given(self, model: EnergyModel, counts: torch.Tensor) -> dict:
        return {self.source: counts, self.copy: self._scale(model, counts) * counts}

    def initial_means(self, model: EnergyModel, data: dict) -> dict:
        """The hidden blocks of the positive state, {h1: p(h1 | v), h2: (M/D) v}: the starting
        point of the paper's mean-field inference (``MeanFieldPCD(init=...)``,
        ``ebm.inference.mean_field(init=...)``)."""
        state = {**data, **self._given(model, data[self.source])}
        for block in [b for b in model.blocks if b not in state]:
            state[block] = model.conditional(block, state).mean
        return {b: x for b, x in state.items() if b not in data}

    def positive(self, model: EnergyModel, data: dict, generator=None) -> dict:
        return {**data, **self.initial_means(model, data)}

    def negative(self, model: EnergyModel, data: dict, generator=None) -> dict:
        state = {**data, **self._given(model, data[self.source])}
        hidden = [b for b in model.blocks if b not in state]
        state = model.with_placeholders(state, hidden)
        for block in hidden:
            state[block] = model.sample_block(block, state, generator)
        for step in range(self.k):
            state.update(self._given(model, model.sample_block(self.source, state, generator)))
            for block in hidden:
                if step == self.k - 1:
                    state[block] = model.conditional(block, state).mean
                else:
                    state[block] = model.sample_block(block, state, generator)
        return state

    def __repr__(self) -> str:
        return f"ScaledCopyCD(k={self.k}, copy={self.copy!r}, source={self.source!r})"


class PCD:
    """Persistent contrastive divergence (Tieleman 2008): ``num_chains`` chains persist across
    parameter updates, each update advancing them by k block Gibbs sweeps. They start from
    training examples of the first batch (drawn with replacement) with hidden blocks sampled.
    ``kernel``: a class or function building the transition kernel from the model (default
    ``BlockGibbs``)."""

    def __init__(self, num_chains: int = 100, k: int = 1, kernel: KernelFactory | None = None):
        self.num_chains, self.k = check_num_chains(num_chains), check_count(k, "k")
        self._kernel = _KernelPerModel(kernel or BlockGibbs)
        self.state: dict | None = None
        self._model: EnergyModel | None = None

    def reset(self) -> None:
        self.state, self._model = None, None

    def state_dict(self) -> dict:
        """The persistent chains (for checkpoints)."""
        return {} if self.state is None else {f"chains.{b}": x for b, x in self.state.items()}

    def load_state_dict(self, tensors: dict, model: EnergyModel) -> None:
        """Restore chains saved by ``state_dict`` for ``model``."""
        chains = {k[7:]: v for k, v in tensors.items() if k.startswith("chains.")}
        if chains:
            if sorted(chains) != sorted(model.blocks):
                raise ValueError(
                    f"the checkpoint's persistent chains cover blocks {sorted(chains)}, the model "
                    f"has {model.blocks}"
                )
            model.check_state(chains)
            held = next(iter(chains.values())).shape[0]
            if held != self.num_chains:
                raise ValueError(
                    f"the checkpoint holds {held} persistent chains, this PCD has "
                    f"num_chains={self.num_chains}; resume with PCD(num_chains={held}) or start "
                    f"afresh with another checkpoint file"
                )
            self.state = {
                b: x.to(device=model.device, dtype=model.dtype) for b, x in chains.items()
            }
            self._model = model

    def positive(self, model: EnergyModel, data: dict, generator=None) -> dict:
        return _complete(model, data, generator)

    def negative(self, model: EnergyModel, data: dict, generator=None) -> dict:
        if self.state is None or self._model is not model:
            n = next(iter(data.values())).shape[0]
            device = generator.device if generator is not None else model.device
            rows = torch.randint(n, (self.num_chains,), generator=generator, device=device)
            rows = rows.to(next(iter(data.values())).device)
            self.state = _complete(model, {b: x[rows] for b, x in data.items()}, generator)
            self._model = model
        self.state = run_chain(self._kernel(model, generator), self.state, self.k).state
        return self.state

    def __repr__(self) -> str:
        return f"PCD(num_chains={self.num_chains}, k={self.k})"


class MeanFieldPCD(PCD):
    """PCD for models whose hidden blocks cannot be summed out given the data (deep Boltzmann
    machines), as Salakhutdinov & Hinton (2009) train them: the data term uses the mean-field
    posterior (``ebm.inference.mean_field``, at most ``max_sweeps`` sweeps), whose means fill the
    hidden blocks of the positive state (the energy is linear in each block, so the gradient of
    E(v, mu) is the mean-field estimate of the data moments), and the model term uses
    ``num_chains`` persistent chains advanced by k block Gibbs sweeps per update. ``init``: a
    function (model, data) -> {hidden block: starting means} for the mean-field fit (default:
    each block's mean at zero natural parameters), e.g. ``ScaledCopyCD().initial_means`` for
    the over-replicated softmax.

    The gradient follows a lower bound on the log-likelihood (the mean-field bound) rather than
    the log-likelihood itself, plus the bias of the persistent chains."""

    def __init__(
        self,
        num_chains: int = 100,
        k: int = 1,
        max_sweeps: int = 10,
        tol: float = 1e-4,
        kernel: KernelFactory | None = None,
        init: Callable[[EnergyModel, dict], dict] | None = None,
    ):
        super().__init__(num_chains, k, kernel)
        self.max_sweeps, self.tol = max_sweeps, tol
        if init is not None and not callable(init):
            raise TypeError(
                f"init must be callable (model, data) -> {{block: means}}, got {init!r}"
            )
        self.init = init

    def positive(self, model: EnergyModel, data: dict, generator=None) -> dict:
        start = None if self.init is None else self.init(model, data)
        q = mean_field(model, data, max_sweeps=self.max_sweeps, tol=self.tol, init=start)
        return {**data, **q.means}

    def __repr__(self) -> str:
        return (
            f"MeanFieldPCD(num_chains={self.num_chains}, k={self.k}, max_sweeps={self.max_sweeps})"
        )


class HMCCD:
    """Contrastive divergence with HMC transitions, for continuous visible blocks whose energy
    block Gibbs cannot sample (an under-complete product of experts): the negatives start at the
    data and take k ``BatchedHMC`` transitions (``num_steps`` leapfrog steps of ``step_size``) on
    the free energy of the data's continuous blocks, the other blocks summed out where they can
    be. Biased like CD-k; the bias shrinks with k and with the acceptance rate."""

    def __init__(self, k: int = 1, step_size: float = 0.1, num_steps: int = 10):
        self.k, self.step_size, self.num_steps = (
            check_count(k, "k"),
            float(step_size),
            int(num_steps),
        )
        self._blocks: list[str] = []
        self._kernel = _KernelPerModel(self._hmc)

    def _hmc(self, model: EnergyModel) -> BatchedHMC:
        return BatchedHMC(model, self._blocks, self.step_size, self.num_steps)

    def negative(self, model: EnergyModel, data: dict, generator=None) -> dict:
        blocks = [b for b in data if not model.units[b].discrete]
        if blocks != self._blocks:
            self._blocks, self._kernel.kernel = blocks, None
        hmc = self._kernel(model, generator)
        state = {b: x for b, x in data.items() if b not in hmc.sum_out}
        return run_chain(hmc, state, self.k).state

    def __repr__(self) -> str:
        return f"HMCCD(k={self.k}, step_size={self.step_size}, num_steps={self.num_steps})"
