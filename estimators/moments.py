"""The moment-averaged annealing path for binary RBMs (Grosse, Maddison & Salakhutdinov 2013).

Along the geometric path the intermediate distributions can be far from both ends (for an RBM
trained with PCD the mass moves abruptly near beta = 1). The moment-averaged path instead asks the
intermediate RBM at beta to have the averaged expected sufficient statistics

    s(beta) = (1 - beta) s_A + beta s_B,     s = (E[v], E[h], E[v h^T]),

of the base A and the model B. Its parameters theta(beta) are the maximum-entropy (moment-matching)
solution: the maximiser of the concave theta . s(beta) - log Z(theta). They are fitted at
``num_knots`` betas and interpolated linearly in the natural parameters in between (each
interpolant is itself an RBM). Two fits:

- ``exact``: log Z(theta) by enumerating the hidden layer, maximised with L-BFGS (float64); for
  RBMs whose hidden layer has at most ``max_hidden_states`` states;
- ``sampled``: for RBMs of any size, as in the paper: s_B from persistent Gibbs chains of the model,
  and each knot by stochastic gradient ascent with gradient s(beta) - E_theta[s] estimated from
  persistent chains (PCD), warm-started from the previous knot, with the parameters averaged over
  the second half of the steps.

AIS is unbiased along any path whose ends are exactly the base and the model, so the fit's accuracy
affects only the variance, never the correctness, of the estimate.
"""

from __future__ import annotations

import bisect
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ebm.base import FactorizedBase
from ebm.enumeration import describe_count
from ebm.factors import Bias, Dense
from ebm.model import EnergyModel
from ebm.models import rbm
from ebm.units import Bernoulli
from samplers.sweep import gibbs_sweep

__all__ = ["MomentAveragedPath", "moment_averaged_path", "rbm_parameters", "rbm_moments"]

Params = tuple[Tensor, Tensor, Tensor]  # W (V, H), b (V,), c (H,)
Moments = tuple[Tensor, Tensor, Tensor]  # E[v] (V,), E[h] (H,), E[v h^T] (V, H)


def rbm_parameters(model: EnergyModel) -> Params:
    """(W, b, c) of a binary RBM with one visible and one hidden block (Dense and Bias factors
    only, as ``ebm.models.rbm`` builds it), for E(v, h) = -b.v - c.h - v^T W h; ValueError
    otherwise."""
    if len(model.visible) != 1 or len(model.blocks) != 2:
        raise ValueError("the moment-averaged path here is for RBMs: one visible, one hidden block")
    (v,), (h,) = model.visible, model.hidden()
    if not all(isinstance(model.units[x], Bernoulli) for x in (v, h)):
        raise ValueError("the moment-averaged path here is for binary (Bernoulli) RBMs")
    weight = None
    b = torch.zeros(model.units[v].n, dtype=model.dtype, device=model.device)
    c = torch.zeros(model.units[h].n, dtype=model.dtype, device=model.device)
    for f in model.factors.values():
        if isinstance(f, Dense):
            if weight is not None:
                raise ValueError("the RBM must have one Dense factor")
            weight = f.weight if f.blocks == (v, h) else f.weight.T
        elif isinstance(f, Bias):
            if f.blocks[0] == v:
                b = b + f.bias
            else:
                c = c + f.bias
        else:
            raise ValueError(f"factor {f.name!r} is not part of a binary RBM")
    if weight is None:
        raise ValueError("the RBM has no Dense factor")
    return weight.detach(), b.detach(), c.detach()


def _hidden_states(n: int, device) -> Tensor:
    index = torch.arange(2**n, device=device)
    return ((index.unsqueeze(-1) >> torch.arange(n, device=device)) & 1).double()


def _log_z(params: Params, hs: Tensor) -> Tensor:
    """log Z = logsumexp_h [c.h + sum_i softplus(b_i + (W h)_i)] (differentiable)."""
    w, b, c = params
    return torch.logsumexp(hs @ c + F.softplus(b + hs @ w.T).sum(-1), 0)


def rbm_moments(params: Params, max_hidden_states: int = 2**20) -> Moments:
    """Exact (E[v], E[h], E[v h^T]) of a binary RBM, as the gradient of log Z with respect to
    (b, c, W), by enumerating the hidden layer (float64)."""
    w, b, c = (p.detach().double().requires_grad_(True) for p in params)
    n_hidden = c.numel()
    if n_hidden > math.log2(max_hidden_states):
        raise ValueError(
            f"enumerating {describe_count(n_hidden)} of the hidden layer exceeds "
            f"max_hidden_states={max_hidden_states:,}"
        )
    with torch.enable_grad():
        gw, gb, gc = torch.autograd.grad(
            _log_z((w, b, c), _hidden_states(n_hidden, w.device)), (w, b, c)
        )
    return gb, gc, gw


def _average(a, b, beta: float) -> tuple[Tensor, ...]:
    return tuple((1 - beta) * x + beta * y for x, y in zip(a, b, strict=True))


def _match_exact(target: Moments, start: Params, hs: Tensor, max_iter: int) -> Params:
    """theta maximising theta . s - log Z(theta) (concave) by L-BFGS from ``start`` (float64)."""
    ev, eh, evh = target
    w, b, c = (p.detach().double().clone().requires_grad_(True) for p in start)
    opt = torch.optim.LBFGS(
        [w, b, c],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = _log_z((w, b, c), hs) - (evh * w).sum() - ev @ b - eh @ c
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), c.detach()


class _RBMAt:
    """A binary RBM (``ebm.models.rbm``, blocks v and h) whose parameters are set to theta before
    each use: the path's intermediate distributions, sampled by the project's one block Gibbs
    update (``samplers.sweep``)."""

    def __init__(self, like: Params):
        w, b, c = like
        self.model = rbm(
            b.numel(),
            c.numel(),
            weight=torch.zeros_like(w),
            visible_bias=torch.zeros_like(b),
            hidden_bias=torch.zeros_like(c),
        )
        factors = list(self.model.factors.values())
        self._weight = next(f.weight for f in factors if isinstance(f, Dense))
        self._bias = {f.blocks[0]: f.bias for f in factors if isinstance(f, Bias)}
        self._theta: Params | None = None

    def set(self, theta: Params) -> _RBMAt:
        if theta is not self._theta:
            w, b, c = theta
            with torch.no_grad():
                self._weight.copy_(w)
                self._bias["v"].copy_(b)
                self._bias["h"].copy_(c)
            self._theta = theta
        return self

    def sweep(self, v: Tensor, generator) -> Tensor:
        """One sweep h ~ p(h | v), v ~ p(v | h); returns the new v."""
        state = self.model.with_placeholders({"v": v}, ["h"])
        return gibbs_sweep(self.model, state, [["h"], ["v"]], generator)["v"]

    def gibbs(self, v: Tensor, generator) -> tuple[Tensor, Tensor]:
        """``sweep``, and E[h | new v] (for Rao-Blackwellised moments)."""
        m = self.model
        v = self.sweep(v, generator)
        with torch.no_grad():
            return v, m.units["h"].mean(m.natural("h", m.with_placeholders({"v": v}, ["h"])))


def _chain_moments(v: Tensor, ph: Tensor) -> Moments:
    """Moments of a batch of chains, Rao-Blackwellised over h: (mean v, mean E[h|v], mean v E[h|v]^T)."""
    return v.mean(0), ph.mean(0), v.T @ ph / v.shape[0]


def _sampled_moments(params: Params, v: Tensor, sweeps: int, generator) -> tuple[Moments, Tensor]:
    """Moments of the RBM estimated by ``sweeps`` Gibbs sweeps of the chains ``v`` after as many
    sweeps of burn-in (the second half of the run is averaged); returns them and the chains."""
    chain = _RBMAt(params).set(params)
    for _ in range(sweeps):
        v, _ = chain.gibbs(v, generator)
    total = None
    for _ in range(sweeps):
        v, ph = chain.gibbs(v, generator)
        m = _chain_moments(v, ph)
        total = m if total is None else tuple(t + x for t, x in zip(total, m, strict=True))
    return tuple(t / sweeps for t in total), v


def _match_sampled(
    target: Moments, start: Params, v: Tensor, steps: int, lr: float, generator
) -> tuple[Params, Tensor, float]:
    """Stochastic gradient ascent on theta . s - log Z(theta): theta += lr (s - s_chains), with
    s_chains from persistent chains v advanced one sweep per step; the parameters are averaged over
    the second half of the steps (Polyak averaging). Returns theta, the chains, and the largest
    absolute difference between s and the chains' moments averaged over that half."""
    ev, eh, evh = target
    w, b, c = (p.clone() for p in start)
    half = steps // 2
    avg = [torch.zeros_like(p) for p in (w, b, c)]
    seen = [torch.zeros_like(x) for x in target]
    chain = _RBMAt(start)
    for step in range(steps):
        v, ph = chain.set((w, b, c)).gibbs(v, generator)  # a new tuple: the values changed
        mv, mh, mvh = _chain_moments(v, ph)
        w += lr * (evh - mvh)
        b += lr * (ev - mv)
        c += lr * (eh - mh)
        if step >= half:
            for a, p in zip(avg, (w, b, c), strict=True):
                a += p
            for s, m in zip(seen, (mv, mh, mvh), strict=True):
                s += m
    n = steps - half
    error = max(float((s / n - t).abs().max()) for s, t in zip(seen, target, strict=True))
    return tuple(a / n for a in avg), v, error


class MomentAveragedPath:
    """An annealing path through RBMs theta(beta) whose moments average those of the base and the
    model (see the module docstring). Same interface as ``GeometricPath``; the chain carries the
    visible layer and the hidden layer is summed out of the densities:

        log f_beta(v) = b(beta) . v + sum_j softplus(c(beta)_j + (v^T W(beta))_j),

    with theta(0) = (0, b_A, 0) the base (log Z_0 = sum_i softplus(b_A,i) + H log 2) and
    theta(1) the model. ``moment_error`` is the largest absolute difference between a knot's
    moments and its target s(beta): exact for ``fit="exact"``, estimated from the chains for
    ``fit="sampled"``.
    """

    def __init__(
        self,
        model: EnergyModel,
        base: FactorizedBase | None = None,
        num_knots: int = 10,
        fit: str = "auto",
        max_iter: int = 200,
        max_hidden_states: int = 2**16,
        num_particles: int = 1000,
        fit_steps: int = 500,
        lr: float = 0.05,
        generator: torch.Generator | None = None,
        progress: bool = True,
    ):
        w, b, c = rbm_parameters(model)
        (self.v,), (self.h,) = model.visible, model.hidden()
        base = FactorizedBase.uniform(model) if base is None else base
        if base.blocks != [self.v]:
            raise ValueError("the base must cover the visible block only")
        if isinstance(num_knots, bool) or not isinstance(num_knots, int) or num_knots < 2:
            raise ValueError(f"num_knots must be an int >= 2 (the two ends), got {num_knots!r}")
        enumerable = c.numel() <= math.log2(max_hidden_states)
        if fit == "auto":
            fit = "exact" if enumerable else "sampled"
        if fit not in ("exact", "sampled"):
            raise ValueError(f"fit must be 'auto', 'exact' or 'sampled', got {fit!r}")
        if fit == "exact" and not enumerable:
            raise ValueError(
                f"the exact fit enumerates {describe_count(c.numel())} of the hidden layer; the limit is "
                f"max_hidden_states={max_hidden_states:,} (use fit='sampled')"
            )
        self.model, self.base, self.fit = model, base, fit
        self.sum_out, self.chain_blocks = [self.h], [self.v]
        b_a = base.natural[self.v].to(device=w.device, dtype=w.dtype)
        theta_a = (torch.zeros_like(w), b_a, torch.zeros_like(c))
        theta_b = (w, b, c)
        self.log_z0 = float(F.softplus(b_a.double()).sum()) + c.numel() * math.log(2.0)
        self.knots = torch.linspace(0.0, 1.0, num_knots, dtype=torch.float64)
        bar = tqdm(
            total=num_knots - 2, desc="moment-averaged path", unit="knot", disable=not progress
        )
        if fit == "exact":
            thetas = self._fit_exact(theta_a, theta_b, max_iter, bar)
        else:
            thetas = self._fit_sampled(
                theta_a, theta_b, num_particles, fit_steps, lr, generator, bar
            )
        bar.close()
        self.thetas = [tuple(p.to(model.dtype) for p in t) for t in thetas]
        self._recent: dict[float, Params] = {}
        self._chain = _RBMAt(self.thetas[-1])

    def _fit_exact(self, theta_a: Params, theta_b: Params, max_iter: int, bar) -> list[Params]:
        theta_a, theta_b = (tuple(p.double() for p in t) for t in (theta_a, theta_b))
        hs = _hidden_states(theta_b[2].numel(), theta_b[0].device)
        states = hs.shape[0]  # already checked against max_hidden_states
        s_a, s_b = rbm_moments(theta_a, states), rbm_moments(theta_b, states)
        thetas, errors = [theta_a], []
        for beta in self.knots[1:-1].tolist():
            target = _average(s_a, s_b, beta)
            theta = _match_exact(target, _average(theta_a, theta_b, beta), hs, max_iter)
            errors.append(
                max(
                    float((x - y).abs().max())
                    for x, y in zip(rbm_moments(theta, states), target, strict=True)
                )
            )
            thetas.append(theta)
            bar.update()
        self.moment_error = max(errors, default=0.0)
        return [*thetas, theta_b]

    def _fit_sampled(
        self, theta_a: Params, theta_b: Params, n: int, steps: int, lr: float, generator, bar
    ) -> list[Params]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"num_particles must be an int >= 2, got {n!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"fit_steps must be an int >= 2, got {steps!r}")
        w_a, b_a, c_a = theta_a
        p_v = torch.sigmoid(b_a)  # the base: independent v, and h uniform since W = 0, c = 0
        s_a = (p_v, torch.full_like(c_a, 0.5), (0.5 * p_v)[:, None].expand_as(w_a))
        v0 = torch.bernoulli(p_v.expand(n, -1), generator=generator)  # exact draws of the base
        s_b, _ = _sampled_moments(theta_b, v0.clone(), steps, generator)
        thetas, errors, v, theta = [theta_a], [], v0, theta_a
        for beta in self.knots[1:-1].tolist():
            theta, v, error = _match_sampled(
                _average(s_a, s_b, beta), theta, v, steps, lr, generator
            )
            thetas.append(theta)
            errors.append(error)
            bar.update()
        self.moment_error = max(errors, default=0.0)
        return [*thetas, theta_b]

    def fingerprint_tensors(self) -> list[Tensor]:
        """Tensors that identify the path beyond the model (for checkpoints)."""
        return [p for t in self.thetas for p in t]

    def theta(self, beta: float) -> Params:
        """The RBM at ``beta``: linear interpolation of the knots' natural parameters. The last two
        betas asked for are remembered: an AIS step asks for beta_k in ``log_f`` and again in
        ``transition``, and for beta_{k-1}, which the step before asked for."""
        beta = float(beta)
        found = self._recent.get(beta)
        if found is None:
            knots = self.knots.tolist()
            j = min(max(bisect.bisect_left(knots, beta), 1), len(knots) - 1)
            a = (beta - knots[j - 1]) / (knots[j] - knots[j - 1])
            found = _average(self.thetas[j - 1], self.thetas[j], a)
            self._recent = {**dict(list(self._recent.items())[-1:]), beta: found}
        return found

    def init(self, num_chains: int, generator: torch.Generator | None = None) -> dict:
        """An exact draw from p_0 (the base)."""
        m = self.model
        return self.base.sample(num_chains, generator, device=m.device, dtype=m.dtype)

    def terms(self, x: dict) -> Tensor:
        return x[self.v]

    def log_f(self, beta: float, v: Tensor) -> Tensor:
        """log f_beta(v), float64: shape (chains,)."""
        w, b, c = self.theta(beta)
        return (v @ b).double() + F.softplus((c + v @ w).double()).sum(-1)

    def transition(self, x: dict, beta: float, v: Tensor, generator=None, reverse: bool = False):
        """h ~ p_beta(h | v), then v ~ p_beta(v | h): reversible for p_beta(v), so the reverse
        transition is the same."""
        return {self.v: self._chain.set(self.theta(beta)).sweep(v, generator)}


def moment_averaged_path(
    model: EnergyModel,
    base: FactorizedBase | None = None,
    num_knots: int = 10,
    fit: str = "auto",
    generator: torch.Generator | None = None,
    progress: bool = True,
    **options,
) -> MomentAveragedPath:
    """The moment-averaged annealing path from ``base`` (default uniform; ``ebm.base_rate`` for
    the base-rate model) to the binary RBM ``model``: intermediate RBMs theta(beta) with moments
    (1 - beta) s_A + beta s_B, fitted at ``num_knots`` betas (``fit="exact"`` by enumerating the
    hidden layer, ``"sampled"`` by persistent chains, ``"auto"`` the first when the hidden layer
    has at most ``max_hidden_states`` states). ``options`` go to ``MomentAveragedPath``. Pass the
    result to ``estimators.ais(model, path=...)``, ``reverse_ais`` or ``sandwich``."""
    return MomentAveragedPath(
        model, base, num_knots=num_knots, fit=fit, generator=generator, progress=progress, **options
    )
