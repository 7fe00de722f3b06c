"""Unit types: the exponential family of one block of variables.

A block of units ``x`` with sufficient statistic ``t(x)`` enters the energy of a model only through
linear terms ``-eta . t(x)`` (the natural parameters ``eta`` that factors contribute) and through the
unit type's own base energy ``E_0(x)`` (zero for discrete units). Given everything else, a block
whose units are conditionally independent therefore has the conditional

    p(x | rest) = exp(eta . t(x) - E_0(x) - A(eta)),      A(eta) = log sum_x exp(eta . t(x) - E_0(x)),

and ``A`` (``log_partition``) is what lets a model sum the block out analytically.

Every unit type here is a ``torch.nn.Module`` (the Gaussian one owns parameters) and knows how to
``sample``, give ``mean``, ``log_partition``, ``validate`` data, and, when discrete, enumerate its
support in chunks (``states``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, distributions, nn

__all__ = ["Units", "Bernoulli", "Spin", "Categorical", "Gaussian", "Gamma", "UNIT_TYPES"]


class Units(nn.Module):
    """Base class of a block's unit type.

    Subclasses define ``shape`` (the shape of one configuration of the block, without the chain
    dimension), ``num_states`` (``math.inf`` when continuous) and the exponential-family methods.
    """

    #: whether the base energy E_0 is identically zero (true of every discrete unit type)
    has_base_energy: bool = False
    #: the keyword under which ``distribution``, ``sample``, ``mean`` and ``log_partition`` take
    #: the quadratic term that factors may add to the block's energy (its form is
    #: ``quadratic_energy``), or None when the unit type takes none. Then the block's units are no
    #: longer independent given the rest: ``"precision"`` for ``Gaussian`` (a precision Q),
    #: ``"log_transition"`` for ``ebm.chains.MarkovChain`` (log transition potentials).
    quadratic_keyword: str | None = None

    #: whether the block's states differ from chain to chain (a count block with one length per
    #: chain: ``ebm.counts.Multinomial``); such a block's log-partition at zero is one per chain
    per_chain: bool = False
    #: whether a conditional draw keeps something of the block's current state (a count block's
    #: length taken from the data): then ``state_keywords(x)`` gives it as keywords of
    #: ``distribution``, ``sample``, ``mean`` and ``log_partition``
    takes_state_keywords: bool = False
    #: whether ``sample`` draws exactly from the conditional p(x | rest) that the energy defines;
    #: False for an approximate sampler of the same model (``ebm.rectified.SteppedSigmoid`` with
    #: ``noisy=True``), which estimators that need invariant transitions (AIS) refuse
    exact_draws: bool = True

    def state_keywords(self, x: Tensor) -> dict[str, Tensor]:
        """What a conditional draw keeps from the block's current state ``x``, as keywords of the
        unit type's methods (``ebm.counts.Multinomial``: each row's length); {} by default."""
        return {}

    def quadratic_energy(self, t: Tensor, q: Tensor) -> Tensor:
        """The energy that the quadratic coefficient ``q`` (one per row) adds at statistics ``t``:
        shape (batch,). Defined by the unit types with a ``quadratic_keyword``."""
        raise NotImplementedError(f"{type(self).__name__} units take no quadratic term")

    def __init__(self, n: int):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"{type(self).__name__}: the number of units must be an int >= 1, got {n!r}"
            )
        self.n = n

    # --- description -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n,)

    @property
    def num_states(self) -> int | float:
        """The number of configurations of the block: an exact Python int for discrete units
        (2^n, k^n: a very large integer for a large block), ``math.inf`` when continuous. Decide
        with ``log2_num_states``, which never overflows."""
        raise NotImplementedError

    @property
    def log2_num_states(self) -> float:
        """log2 of the number of configurations (``math.inf`` when continuous): a float for
        blocks of any size (n for n binary units, n log2 k for n k-way categoricals)."""
        count = self.num_states
        return math.log2(count) if math.isfinite(count) else math.inf

    @property
    def discrete(self) -> bool:
        return math.isfinite(self.log2_num_states)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (parameters are saved separately)."""
        return {"n": self.n}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    # --- the exponential family ---------------------------------------------------------------
    def statistic(self, x: Tensor) -> Tensor:
        """Sufficient statistic t(x) through which factors see the block (identity by default)."""
        return x

    def summary(self, x: Tensor) -> Tensor:
        """One number per row that moves when the block's state does, for trace diagnostics: the
        mean of the units' statistic (shape (batch,))."""
        return self.statistic(x).flatten(1).mean(1)

    def base_energy(self, x: Tensor) -> Tensor:
        """E_0(x), summed over the block: shape (batch,). Zero for discrete units."""
        return x.new_zeros(x.shape[0])

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        """The conditional p(x | rest) as a ``torch.distributions`` object (event = the block)."""
        raise NotImplementedError

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw x ~ p(x | natural). ``generator`` makes the draw reproducible."""
        raise NotImplementedError

    def mean(self, natural: Tensor) -> Tensor:
        """E[x | natural]."""
        raise NotImplementedError

    def log_partition(self, natural: Tensor) -> Tensor:
        """A(eta) = log sum_x exp(eta . t(x) - E_0(x)), summed over the block: shape (batch,)."""
        raise NotImplementedError

    def random(
        self, num_chains: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> Tensor:
        """A draw at zero natural parameters (uniform for discrete units): used to start chains.
        Detached from the unit type's parameters (a starting point, not part of any graph)."""
        ref = self._reference(device, dtype)
        natural = ref.new_zeros((num_chains, *self.shape))
        with torch.no_grad():
            return self.sample(natural, generator)

    def _reference(self, device, dtype) -> Tensor:
        p = next(iter(self.parameters()), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = (
            dtype
            if dtype is not None
            else (p.dtype if p is not None else torch.get_default_dtype())
        )
        return torch.empty(0, device=device, dtype=dtype)

    # --- data ----------------------------------------------------------------------------------
    def validate(self, x: Any, name: str = "block") -> Tensor:
        """Check that ``x`` is a batch of valid states of this block; return it as a tensor.

        Raises ``ValueError`` naming the block when the shape is wrong, a value is not finite or a
        value lies outside the support.
        """
        if not isinstance(x, Tensor):
            try:
                x = torch.as_tensor(x)
            except Exception as err:  # pragma: no cover - torch's message is clear enough
                raise ValueError(f"block {name!r}: data is not array-like ({err})") from err
        if x.dim() != len(self.shape) + 1 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"block {name!r}: expected data of shape (batch, {', '.join(map(str, self.shape))}) "
                f"for {type(self).__name__}({self.extra_repr()}), got {tuple(x.shape)}"
            )
        if x.is_complex():
            raise ValueError(f"block {name!r}: data must be real, got {x.dtype}")
        if x.is_floating_point() and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(f"block {name!r}: data has a non-finite value at index {bad}")
        self._check_support(x, name)
        return x

    def _check_support(self, x: Tensor, name: str) -> None:
        pass

    # --- enumeration ---------------------------------------------------------------------------
    def states(self, index: Tensor, device=None, dtype=None) -> Tensor:
        """The configurations numbered ``index`` (int64, in [0, num_states)), shape (len, *shape)."""
        raise ValueError(f"{type(self).__name__} units are continuous and cannot be enumerated")

    def index(self, x: Tensor) -> Tensor:
        """The configuration number of each row of ``x`` (int64, shape (batch,)): the inverse of
        ``states``."""
        raise ValueError(f"{type(self).__name__} units are continuous and cannot be enumerated")


def digits(index: Tensor, n: int, base: int) -> Tensor:
    """The n base-``base`` digits of ``index``, least significant first: shape (len(index), n)
    (int64). The state numbering of blocks whose units take ``base`` values each."""
    powers = base ** torch.arange(n, device=index.device)
    return (index.unsqueeze(-1) // powers) % base


def from_digits(d: Tensor, base: int) -> Tensor:
    """The inverse of ``digits``: the number of each row of base-``base`` digits (batch, n)."""
    powers = base ** torch.arange(d.shape[-1], device=d.device)
    return (d * powers).sum(-1)


def _bits(index: Tensor, n: int) -> Tensor:
    """Binary digits of ``index``, least significant first: shape (len(index), n)."""
    shifts = torch.arange(n, device=index.device)
    return (index.unsqueeze(-1) >> shifts) & 1


class _Binary(Units):
    """Units with two states per unit; subclasses fix the values and the statistic."""

    low: float = 0.0
    high: float = 1.0

    @property
    def num_states(self) -> int:
        return 2**self.n

    @property
    def log2_num_states(self) -> float:
        return float(self.n)

    def _check_support(self, x: Tensor, name: str) -> None:
        ok = (x == self.low) | (x == self.high)
        if not bool(ok.all()):
            idx = (~ok).nonzero()[0].tolist()
            raise ValueError(
                f"block {name!r}: {type(self).__name__} data must be {self.low:g} or {self.high:g}; "
                f"found {x[tuple(idx)].item()!r} at index {idx}"
            )

    def states(self, index: Tensor, device=None, dtype=None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        bits = _bits(index.to(device), self.n).to(dtype)
        return self.low + (self.high - self.low) * bits

    def index(self, x: Tensor) -> Tensor:
        bits = (x.reshape(x.shape[0], self.n) == self.high).to(torch.int64)
        return (bits << torch.arange(self.n, device=x.device)).sum(-1)


class Bernoulli(_Binary):
    """n independent {0, 1} units: p(x_i = 1 | eta) = sigma(eta_i), A(eta) = sum_i softplus(eta_i)."""

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        return distributions.Independent(distributions.Bernoulli(logits=natural), 1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_i = 1 with probability sigma(eta_i): u_i < sigma(eta_i), u_i ~ U(0, 1)."""
        u = torch.rand(
            natural.shape, generator=generator, device=natural.device, dtype=natural.dtype
        )
        return (u < torch.sigmoid(natural)).to(natural.dtype)

    def mean(self, natural: Tensor) -> Tensor:
        return torch.sigmoid(natural)

    def log_partition(self, natural: Tensor) -> Tensor:
        return F.softplus(natural).sum(-1)


class Spin(_Binary):
    """n independent {-1, +1} units: p(x_i = +1 | eta) = sigma(2 eta_i), A = sum_i log(2 cosh eta_i)."""

    low = -1.0

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        return distributions.Independent(SpinDistribution(logits=2 * natural), 1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_i = +1 with probability sigma(2 eta_i), else -1."""
        u = torch.rand(
            natural.shape, generator=generator, device=natural.device, dtype=natural.dtype
        )
        return torch.where(u < torch.sigmoid(2 * natural), 1.0, -1.0).to(natural.dtype)

    def mean(self, natural: Tensor) -> Tensor:
        return torch.tanh(natural)

    def log_partition(self, natural: Tensor) -> Tensor:
        return torch.logaddexp(natural, -natural).sum(-1)


class _PlusMinusOne(distributions.constraints.Constraint):
    is_discrete = True

    def check(self, value):
        return (value == 1) | (value == -1)


_PLUS_MINUS_ONE = _PlusMinusOne()


class SpinDistribution(distributions.Bernoulli):
    """A Bernoulli variable recoded to {-1, +1}: p(+1) = sigma(logits). Discrete, so no Jacobian."""

    support = _PLUS_MINUS_ONE

    def sample(self, sample_shape=torch.Size()):
        return 2 * super().sample(sample_shape) - 1

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.distributions.utils.broadcast_all(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, (value + 1) / 2, reduction="none")

    @property
    def mean(self):
        return 2 * self.probs - 1

    @property
    def variance(self):
        return 1 - self.mean**2

    def enumerate_support(self, expand=True):
        return 2 * super().enumerate_support(expand) - 1


class Categorical(Units):
    """n independent categorical units with k states each, one-hot coded: x has shape (n, k).

    p(x_i = e_s | eta) = softmax(eta_i)_s, A(eta) = sum_i logsumexp_s eta_is.
    """

    def __init__(self, n: int, k: int):
        super().__init__(n)
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"Categorical: the number of states k must be an int >= 2, got {k!r}")
        self.k = k

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, self.k)

    @property
    def num_states(self) -> int:
        return self.k**self.n

    @property
    def log2_num_states(self) -> float:
        return self.n * math.log2(self.k)

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "k": self.k}

    def summary(self, x: Tensor) -> Tensor:
        """The mean category index (0 .. k-1) over the units: the mean of the one-hot statistic
        is 1/k whatever the state, so it cannot show a chain moving."""
        return x.argmax(-1).to(x.dtype).flatten(1).mean(1)

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        return distributions.Independent(distributions.OneHotCategorical(logits=natural), 1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        probs = torch.softmax(natural, -1).reshape(-1, self.k)
        idx = torch.multinomial(probs, 1, generator=generator).reshape(natural.shape[:-1])
        return F.one_hot(idx, self.k).to(natural.dtype)

    def mean(self, natural: Tensor) -> Tensor:
        return torch.softmax(natural, -1)

    def log_partition(self, natural: Tensor) -> Tensor:
        return torch.logsumexp(natural, -1).sum(-1)

    def _check_support(self, x: Tensor, name: str) -> None:
        binary = ((x == 0) | (x == 1)).all(-1)
        one_hot = binary & (x.sum(-1) == 1)
        if not bool(one_hot.all()):
            idx = (~one_hot).nonzero()[0].tolist()
            raise ValueError(
                f"block {name!r}: Categorical data must be one-hot along the last axis (k={self.k}); "
                f"unit at index {idx} is {x[tuple(idx)].tolist()}"
            )

    def states(self, index: Tensor, device=None, dtype=None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        return F.one_hot(digits(index.to(device), self.n, self.k), self.k).to(dtype)

    def index(self, x: Tensor) -> Tensor:
        return from_digits(x.reshape(x.shape[0], self.n, self.k).argmax(-1), self.k)


class Gaussian(Units):
    """n real units with base energy E_0(x) = sum_i (x_i - mu_i)^2 / (2 s_i^2).

    Factors see the standardised statistic t(x) = x / s, so a Gaussian-Bernoulli RBM has the energy
    sum_i (v_i - b_i)^2 / (2 s_i^2) - c.h - sum_ij (v_i / s_i) W_ij h_j with ``loc`` = b. Given the
    natural parameters eta (the coefficients of t), x ~ N(mu + s eta, s^2) and
    A(eta) = sum_i [mu_i eta_i / s_i + eta_i^2 / 2 + log s_i + log(2 pi) / 2].

    Factors may also add a quadratic term 1/2 t^T Q t (``precision=Q``, shape (batch, n, n),
    symmetric; mcRBM's covariance units do). The block is then one correlated Gaussian given the
    rest: with Lambda = I + Q and a = eta + mu / s,

        t ~ N(Lambda^-1 a, Lambda^-1),   x = s * t,
        A(eta, Q) = a^T Lambda^-1 a / 2 - log|Lambda| / 2 + sum_i log s_i + n log(2 pi) / 2
                    - |mu / s|^2 / 2,

    computed through one batched Cholesky factor of Lambda per chain (O(n^3) each); Lambda must be
    positive definite (ValueError otherwise). With Q = 0 this is the independent case above.

    ``loc`` (mu) is learned unless ``learn_loc`` is false; ``log_scale`` (log s) is learned when
    ``learn_variance`` is true.
    """

    has_base_energy = True
    quadratic_keyword = "precision"

    def __init__(
        self,
        n: int,
        learn_variance: bool = False,
        loc=None,
        scale=None,
        learn_loc: bool = True,
    ):
        super().__init__(n)
        self.learn_variance = bool(learn_variance)
        self.learn_loc = bool(learn_loc)
        loc_t = _finite_param(loc, (n,), "loc", default=0.0)
        scale_t = _finite_param(scale, (n,), "scale", default=1.0)
        if (scale_t <= 0).any():
            raise ValueError("Gaussian: scale must be positive")
        if self.learn_loc:
            self.loc = nn.Parameter(loc_t)
        else:
            self.register_buffer("loc", loc_t)
        log_scale = scale_t.log()
        if self.learn_variance:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def num_states(self) -> float:
        return math.inf

    @property
    def log2_num_states(self) -> float:
        return math.inf

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def config(self) -> dict[str, Any]:
        out = {"n": self.n, "learn_variance": self.learn_variance}
        if not self.learn_loc:
            out["learn_loc"] = False
        return out

    def statistic(self, x: Tensor) -> Tensor:
        return x / self.scale

    def base_energy(self, x: Tensor) -> Tensor:
        return (0.5 * ((x - self.loc) / self.scale) ** 2).sum(-1)

    def quadratic_energy(self, t: Tensor, q: Tensor) -> Tensor:
        """t^T Q t / 2 per row (Q = ``precision``, shape (batch, n, n))."""
        return 0.5 * torch.einsum("ni,nij,nj->n", t, q, t)

    def distribution(
        self, natural: Tensor, precision: Tensor | None = None
    ) -> distributions.Distribution:
        if precision is None:
            return distributions.Independent(
                distributions.Normal(self.mean(natural), self.scale), 1
            )
        chol, mean_t = self._solve(natural, precision)
        s = self.scale
        # x = s t: the precision of x is Lambda / (s s^T)
        lam = chol @ chol.transpose(-1, -2)
        return distributions.MultivariateNormal(
            s * mean_t, precision_matrix=lam / (s.unsqueeze(-1) * s.unsqueeze(-2))
        )

    def sample(
        self,
        natural: Tensor,
        generator: torch.Generator | None = None,
        precision: Tensor | None = None,
    ) -> Tensor:
        eps = torch.randn(
            natural.shape, generator=generator, device=natural.device, dtype=natural.dtype
        )
        if precision is None:
            return self.mean(natural) + self.scale * eps
        chol, mean_t = self._solve(natural, precision)
        # t = mean + L^-T eps has covariance (L L^T)^-1 = Lambda^-1
        noise = torch.linalg.solve_triangular(
            chol.transpose(-1, -2), eps.unsqueeze(-1), upper=True
        ).squeeze(-1)
        return self.scale * (mean_t + noise)

    def mean(self, natural: Tensor, precision: Tensor | None = None) -> Tensor:
        if precision is None:
            return self.loc + self.scale * natural
        return self.scale * self._solve(natural, precision)[1]

    def log_partition(self, natural: Tensor, precision: Tensor | None = None) -> Tensor:
        s = self.scale
        if precision is None:
            per_unit = (
                self.loc * natural / s
                + 0.5 * natural**2
                + self.log_scale
                + 0.5 * math.log(2 * math.pi)
            )
            return per_unit.sum(-1)
        chol, mean_t = self._solve(natural, precision)
        a = natural + self.loc / s
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        constant = (
            self.log_scale.sum()
            + 0.5 * self.n * math.log(2 * math.pi)
            - 0.5 * ((self.loc / s) ** 2).sum()
        )
        return 0.5 * (a * mean_t).sum(-1) - 0.5 * log_det + constant

    def _solve(self, natural: Tensor, precision: Tensor) -> tuple[Tensor, Tensor]:
        """(Cholesky factor L of Lambda = I + Q, the mean Lambda^-1 (eta + mu / s) of t)."""
        if precision.shape[-2:] != (self.n, self.n):
            raise ValueError(
                f"Gaussian: precision must have shape (batch, {self.n}, {self.n}), "
                f"got {tuple(precision.shape)}"
            )
        eye = torch.eye(self.n, device=precision.device, dtype=precision.dtype)
        chol, info = torch.linalg.cholesky_ex(eye + precision)
        if bool((info != 0).any()):
            bad = int((info != 0).nonzero()[0, 0]) if info.dim() else 0
            raise ValueError(
                f"Gaussian: I + precision is not positive definite (chain {bad}): the block's "
                f"conditional is not a proper Gaussian"
            )
        a = natural + self.loc / self.scale
        mean_t = torch.cholesky_solve(a.unsqueeze(-1), chol).squeeze(-1)
        return chol, mean_t


class Gamma(Units):
    """n positive units with a Gamma(alpha, 1) base: E_0(u) = sum_i [u_i - (alpha_i - 1) log u_i].

    The auxiliary precisions of Student-t experts (Welling, Hinton & Osindero 2003). Factors add
    -eta . u (t(u) = u), so given the rest u_i ~ Gamma(alpha_i, rate 1 - eta_i), which needs
    eta_i < 1 (ValueError otherwise), and

        A(eta) = sum_i [log Gamma(alpha_i) - alpha_i log(1 - eta_i)].

    Summing u_i out of a factor u_i r_i leaves Gamma(alpha_i) (1 + r_i)^-alpha_i: a Student-t
    shaped term. ``shape`` (alpha, default 1) is learned as ``log_shape`` when ``learn_shape``.
    Draws use torch's Gamma sampler in a forked random stream seeded from ``generator``, so a
    fixed generator gives the same draws.
    """

    has_base_energy = True

    def __init__(self, n: int, shape=None, learn_shape: bool = True):
        super().__init__(n)
        alpha = _finite_param(shape, (n,), "shape", default=1.0)
        if (alpha <= 0).any():
            raise ValueError("Gamma: shape must be positive")
        self.learn_shape = bool(learn_shape)
        if self.learn_shape:
            self.log_shape = nn.Parameter(alpha.log())
        else:
            self.register_buffer("log_shape", alpha.log())

    @property
    def num_states(self) -> float:
        return math.inf

    @property
    def log2_num_states(self) -> float:
        return math.inf

    @property
    def shape_parameter(self) -> Tensor:
        """alpha, shape (n,)."""
        return self.log_shape.exp()

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "learn_shape": self.learn_shape}

    def base_energy(self, x: Tensor) -> Tensor:
        return (x - (self.shape_parameter - 1) * torch.log(x)).sum(-1)

    def _rate(self, natural: Tensor) -> Tensor:
        rate = 1 - natural
        if not bool((rate > 0).all()):
            raise ValueError("Gamma: natural parameters must be below 1 (the rate 1 - eta > 0)")
        return rate

    def distribution(self, natural: Tensor) -> distributions.Distribution:
        alpha = self.shape_parameter.expand_as(natural)
        return distributions.Independent(distributions.Gamma(alpha, self._rate(natural)), 1)

    def sample(self, natural: Tensor, generator: torch.Generator | None = None) -> Tensor:
        rate = self._rate(natural)
        alpha = self.shape_parameter.to(natural.dtype).expand_as(natural).detach()
        gamma = distributions.Gamma(alpha, rate.detach(), validate_args=False)
        if generator is None:
            return gamma.sample()
        # torch.distributions draws from the global generator: seed a forked one from ours
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        devices = [natural.device] if natural.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return gamma.sample()

    def mean(self, natural: Tensor) -> Tensor:
        return self.shape_parameter / self._rate(natural)

    def log_partition(self, natural: Tensor) -> Tensor:
        alpha = self.shape_parameter
        return (torch.lgamma(alpha) - alpha * torch.log(self._rate(natural))).sum(-1)

    def _check_support(self, x: Tensor, name: str) -> None:
        if not bool((x > 0).all()):
            idx = (x <= 0).nonzero()[0].tolist()
            raise ValueError(f"block {name!r}: Gamma data must be positive; found a value at {idx}")


def as_float_tensor(value) -> Tensor:
    """``value`` as a tensor: a floating-point one keeps its dtype, anything else takes torch's
    default floating dtype."""
    t = torch.as_tensor(value)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _finite_param(
    value, shape: tuple[int, ...], name: str, default: float | None = None, init=None
) -> Tensor:
    """Turn a user-given parameter into a float tensor of ``shape``; refuse non-finite values.

    A floating-point tensor (or numpy array) keeps its dtype, so float64 values stay float64 (the
    model is then built in float64, see ``EnergyModel``); other values (lists, ints) become
    torch's default dtype. When ``value`` is None, returns ``init()`` if given, else a tensor
    filled with ``default``.
    """
    if value is None:
        if init is not None:
            return init()
        return torch.full(shape, float(default))
    t = as_float_tensor(value).clone()
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite values (nan or inf)")
    return t


#: registry of unit types by class name, used when loading a saved model
UNIT_TYPES: dict[str, type[Units]] = {
    cls.__name__: cls for cls in (Bernoulli, Spin, Categorical, Gaussian, Gamma)
}
