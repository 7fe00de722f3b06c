"""Ready-made models, each built on the Graph API."""

from __future__ import annotations

import math

import torch

from ebm.chains import MarkovChain
from ebm.counts import Multinomial
from ebm.dbn import DBN
from ebm.factors import (
    BernoulliEmission,
    Bias,
    CategoricalEmission,
    CovariancePooling,
    Dense,
    Factored3Way,
    GaussianEmission,
    InitialState,
    LengthScaledBias,
    ProjectedStudentT,
    SharedBias,
    SharedDense,
    StudentT,
    Transition,
)
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.networks import higher_order_bm, ising, potts, semi_restricted_bm
from ebm.rectified import SteppedSigmoid
from ebm.units import (
    Bernoulli,
    Categorical,
    Gamma,
    Gaussian,
    Spin,
    _finite_param,
    as_float_tensor,
)

__all__ = [
    "rbm",
    "bimodal_rbm",
    "gaussian_rbm",
    "mcrbm",
    "dbm",
    "dbn",
    "replicated_softmax",
    "over_replicated_softmax",
    "pohmm",
    "fas",
    "upoe",
    "upoe_log_z",
    "gated_rbm",
    "crbm",
    "fcrbm",
    "higher_order_bm",
    "checkerboard_ising",
    "ising",
    "potts",
    "semi_restricted_bm",
]


def _check_sizes(**sizes: int) -> None:
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")


def rbm(
    n_visible: int,
    n_hidden: int,
    weight=None,
    visible_bias=None,
    hidden_bias=None,
    init_scale: float = 0.01,
) -> EnergyModel:
    """Binary restricted Boltzmann machine, E(v, h) = -b.v - c.h - v^T W h, v in {0,1}^n_visible.

    Blocks ``v`` (visible) and ``h``; factors ``dense_v_h`` (W, shape (n_visible, n_hidden)),
    ``bias_v`` (b) and ``bias_h`` (c). Unspecified W is N(0, init_scale^2), biases zero. Given
    parameters must be finite and of the right shape, else ValueError naming the parameter.
    """
    _check_sizes(n_visible=n_visible, n_hidden=n_hidden)
    weight = _param_or_none(weight, (n_visible, n_hidden), "weight")
    visible_bias = _param_or_none(visible_bias, (n_visible,), "visible_bias")
    hidden_bias = _param_or_none(hidden_bias, (n_hidden,), "hidden_bias")
    g = Graph()
    g.add_block("v", Bernoulli(n_visible), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(
        Dense("v", "h", weight=weight, init_scale=init_scale),
        Bias("v", visible_bias),
        Bias("h", hidden_bias),
    )
    return EnergyModel(g)


def bimodal_rbm(
    n_visible: int = 10, n_hidden: int = 4, weight: float = 2.0, tilt: float = 0.15
) -> EnergyModel:
    """A binary RBM with two far-apart modes, for testing samplers: every weight is ``weight``,
    the biases b_i = -sum_j W_ij / 2 + ``tilt`` and c_j = -sum_i W_ij / 2. With ``tilt`` = 0 the
    energy is symmetric under (v, h) -> (1 - v, 1 - h) and the two modes (v all off, v all on)
    have equal mass; a positive tilt favours the all-on mode (about 81% of the mass with the
    defaults). Between them lie states of much higher energy, so block Gibbs started in one mode
    practically never reaches the other, while p(v) is small enough (2^n_visible states) to
    enumerate exactly."""
    _check_sizes(n_visible=n_visible, n_hidden=n_hidden)
    w = torch.full((n_visible, n_hidden), float(weight))
    return rbm(
        n_visible,
        n_hidden,
        weight=w,
        visible_bias=-w.sum(1) / 2 + float(tilt),
        hidden_bias=-w.sum(0) / 2,
    )


def gaussian_rbm(
    n_visible: int,
    n_hidden: int,
    weight=None,
    visible_bias=None,
    hidden_bias=None,
    scale=None,
    learn_variance: bool = False,
    init_scale: float = 0.01,
    hidden: str = "binary",
    copies: int = 20,
    noisy: bool = False,
) -> EnergyModel:
    """Gaussian RBM, E(v, h) = sum_i (v_i - b_i)^2 / (2 s_i^2) - c.h - sum_ij (v_i/s_i) W_ij h_j
    + E_0(h).

    ``hidden="binary"`` (Gaussian-Bernoulli): h_j in {0, 1}, E_0 = 0, given v
    h_j ~ Bernoulli(sigma(x_j)) with x_j = c_j + (W^T v/s)_j. ``hidden="relu"`` (Gaussian-ReLU,
    Nair & Hinton 2010): each h_j is the number of ``copies`` = N binary copies on, a
    ``ebm.rectified.SteppedSigmoid`` unit with E_0 = -log e_{h_j}(exp(-0.5), ..., exp(-(N - 0.5))):
    given v, h_j is the sum of N independent Bernoulli(sigma(x_j - i + 0.5)), and summing h out
    leaves sum_j sum_i softplus(x_j - i + 0.5) (exact for N copies); ``noisy=True`` draws h with
    the noisy rectified unit min(N, max(0, x + sqrt(sigma(x)) eps)) instead, an approximate sampler
    of the same model. In both, given h, v_i ~ N(b_i + s_i (W h)_i, s_i^2).

    ``visible_bias`` is b (the Gaussian units' ``loc``), ``scale`` is s (default 1), learned
    through its logarithm (``log_scale``, so s stays positive) when ``learn_variance``. Given
    parameters must be finite, else ValueError naming the parameter.
    """
    _check_sizes(n_visible=n_visible, n_hidden=n_hidden)
    if hidden not in ("binary", "relu"):
        raise ValueError(f"hidden must be 'binary' or 'relu', got {hidden!r}")
    weight = _param_or_none(weight, (n_visible, n_hidden), "weight")
    visible_bias = _param_or_none(visible_bias, (n_visible,), "visible_bias")
    hidden_bias = _param_or_none(hidden_bias, (n_hidden,), "hidden_bias")
    scale = _param_or_none(scale, (n_visible,), "scale")
    if scale is not None and (scale <= 0).any():
        raise ValueError("scale must be positive")
    g = Graph()
    g.add_block(
        "v",
        Gaussian(n_visible, learn_variance=learn_variance, loc=visible_bias, scale=scale),
        visible=True,
    )
    if hidden == "relu":
        g.add_block("h", SteppedSigmoid(n_hidden, copies=copies, noisy=noisy))
    else:
        g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(Dense("v", "h", weight=weight, init_scale=init_scale), Bias("h", hidden_bias))
    return EnergyModel(g)


def mcrbm(
    n_visible: int,
    n_covariance: int,
    n_mean: int,
    n_factors: int,
    visible_bias=None,
    init_scale: float = 0.1,
) -> EnergyModel:
    """Mean-covariance RBM (Ranzato & Hinton 2010) over real visibles v, binary covariance units
    ``hc`` and binary mean units ``hm``:

        E(v, hc, hm) = |v - b|^2 / 2 - 1/2 sum_{f,k} P_fk hc_k (C_f . v)^2 - bc.hc
                       - v^T W hm - bm.hm,

    with C (n_visible, F) filters, P (F, n_covariance) <= 0 pooling (``CovariancePooling``), W
    (n_visible, n_mean) (``Dense``) and b the Gaussian units' ``loc``. Given v the hidden units
    are independent: p(hc_k = 1 | v) = sigma(bc_k + 1/2 sum_f P_fk (C_f . v)^2) and p(hm_j = 1 | v)
    = sigma(bm_j + (W^T v)_j). Given the hidden units, v is exactly Gaussian with a full
    covariance:

        v | hc, hm ~ N(Sigma (b + W hm), Sigma),   Sigma^-1 = I + C diag(-P hc) C^T,

    so block Gibbs alternates {v} and {hc, hm}: the covariance units set the correlations and the
    mean units the mean. The hidden blocks can be summed out analytically given v (free energy of
    v), and v given the hidden units (exact log Z by enumerating hc and hm on small models; AIS over
    the hidden units). Weights N(0, init_scale^2), P near -1, biases zero.
    """
    _check_sizes(n_visible=n_visible, n_covariance=n_covariance, n_mean=n_mean, n_factors=n_factors)
    visible_bias = _param_or_none(visible_bias, (n_visible,), "visible_bias")
    g = Graph()
    g.add_block("v", Gaussian(n_visible, loc=visible_bias), visible=True)
    g.add_block("hc", Bernoulli(n_covariance))
    g.add_block("hm", Bernoulli(n_mean))
    g.add_factor(
        CovariancePooling("v", "hc", n_factors, init_scale=init_scale, name="covariance"),
        Dense("v", "hm", init_scale=init_scale, name="mean"),
        Bias("hc"),
        Bias("hm"),
    )
    return EnergyModel(g)


def dbm(layers, init_scale: float = 0.01) -> EnergyModel:
    """Deep Boltzmann machine (Salakhutdinov & Hinton 2009) with binary layers of the given sizes
    [n_v, n_h1, n_h2, ...]:

        E(v, h1, ..., hL) = -v^T W1 h1 - h1^T W2 h2 - ... - b.v - c1.h1 - ... - cL.hL.

    Blocks ``v`` (visible), ``h1`` ... ``hL``; factors ``w1`` ... ``wL`` (Dense between adjacent
    layers) and ``bias_v``, ``bias_h1``, .... The block graph is a path, so the schedule is its
    two colour classes: the even layers (v, h2, ...) and the odd ones (h1, h3, ...), each updated
    in one step given the other. Given the odd layers the even ones are independent and can be
    summed out analytically (what exact log Z and AIS for DBMs do). Weights N(0, init_scale^2),
    biases zero.
    """
    layers = list(layers)
    if len(layers) < 2:
        raise ValueError(f"a DBM needs a visible layer and at least one hidden layer, got {layers}")
    _check_sizes(**{f"layer {i}": n for i, n in enumerate(layers)})
    names = ["v"] + [f"h{i}" for i in range(1, len(layers))]
    g = Graph()
    for i, (name, n) in enumerate(zip(names, layers, strict=True)):
        g.add_block(name, Bernoulli(n), visible=i == 0)
    factors = [
        Dense(names[i], names[i + 1], init_scale=init_scale, name=f"w{i + 1}")
        for i in range(len(layers) - 1)
    ]
    g.add_factor(*factors, *(Bias(name) for name in names))
    return EnergyModel(g)


def dbn(layers, labels: int | None = None, init_scale: float = 0.01) -> DBN:
    """Deep belief net (Hinton, Osindero & Teh 2006) with binary layers [n_v, n_1, ..., n_L]: a
    top RBM over h_{L-1} and h_L (with ``labels`` = k, a softmax label block joined to h_L) and
    directed sigmoid layers below it, p(h_{l-1} | h_l) = sigma(G_l h_l + g_{l-1}), with untied
    recognition weights q(h_l | h_{l-1}) = sigma(R_l^T h_{l-1} + r_l). ``ebm.dbn.pretrain_dbn``
    trains it greedily, ``ebm.dbn.up_down`` fine-tunes it, ``estimators.dbn_log_likelihood``
    bounds its log-likelihood. See ``ebm.dbn.DBN``."""
    return DBN(layers, labels=labels, init_scale=init_scale)


def replicated_softmax(
    vocab_size: int, n_hidden: int, length: int | None = None, init_scale: float = 0.01
) -> EnergyModel:
    """Replicated Softmax (Salakhutdinov & Hinton 2009): a document of D words over a vocabulary
    of K is a count vector v (sum v = D) and

        E(v, h) = -sum_kj W_kj v_k h_j - sum_k b_k v_k - D sum_j c_j h_j,

    with the unit base energy -log (D! / prod v_k!) of ``ebm.counts.Multinomial``, so that
    v | h ~ Multinomial(D, softmax(b + W h)), h_j | v ~ Bernoulli(sigma(D c_j + (W^T v)_j)),
    and Z_D is the normaliser over the K^D word sequences of length D (it depends on D).

    Blocks ``v`` (visible, ``Multinomial(vocab_size, length)``: the length from the data by
    default) and ``h`` (Bernoulli); factors ``w`` (Dense, W of shape (K, n_hidden)), ``b``
    (Bias on v) and ``c`` (``LengthScaledBias``: c scaled by D). Weights N(0, init_scale^2),
    biases zero. Fix the length with ``ebm.documents.at_length`` to enumerate or anneal.
    """
    _check_sizes(vocab_size=vocab_size, n_hidden=n_hidden)
    g = Graph()
    g.add_block("v", Multinomial(vocab_size, length), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(
        Dense("v", "h", init_scale=init_scale, name="w"),
        Bias("v", name="b"),
        LengthScaledBias("h", "v", name="c"),
    )
    return EnergyModel(g)


def over_replicated_softmax(
    vocab_size: int,
    n_hidden: int,
    m: int,
    length: int | None = None,
    init_scale: float = 0.01,
) -> EnergyModel:
    """Over-replicated softmax (Srivastava, Salakhutdinov & Hinton 2013): a two-layer DBM whose
    second layer is M softmax units sharing the first layer's weights and biases. With v the
    document's D word counts and h2 the counts of the M softmax units (sum h2 = M),

        E(v, h1, h2) = -sum_kj W_kj (v_k + h2_k) h1_j - sum_k b_k (v_k + h2_k)
                       - (D + M) sum_j a_j h1_j

    plus the base energies -log (D! / prod v_k!) - log (M! / prod h2_k!). Given h1, v ~
    Multinomial(D, softmax(b + W h1)) and h2 ~ Multinomial(M, softmax(b + W h1)); given both,
    h1_j ~ Bernoulli(sigma((D + M) a_j + (W^T (v + h2))_j)). M = 0 would be the Replicated Softmax.

    Blocks ``v`` (visible, length from the data by default), ``h1`` (Bernoulli) and ``h2``
    (``Multinomial(vocab_size, m)``); factors ``w`` (``SharedDense``), ``b`` (``SharedBias``)
    and ``a`` (``LengthScaledBias`` over both count blocks). The schedule is {v, h2}, {h1}.
    """
    _check_sizes(vocab_size=vocab_size, n_hidden=n_hidden, m=m)
    g = Graph()
    g.add_block("v", Multinomial(vocab_size, length), visible=True)
    g.add_block("h1", Bernoulli(n_hidden))
    g.add_block("h2", Multinomial(vocab_size, m))
    g.add_factor(
        SharedDense("h1", "v", "h2", init_scale=init_scale, name="w"),
        SharedBias("v", "h2", name="b"),
        LengthScaledBias("h1", "v", "h2", name="a"),
    )
    return EnergyModel(g)


def pohmm(
    n_hmms: int,
    n_states: int,
    length: int,
    emission: str = "bernoulli",
    dims: int = 1,
    symbols: int | None = None,
    sigma: float = 1.0,
    init_scale: float = 1.0,
) -> EnergyModel:
    """Product of ``n_hmms`` hidden Markov models (Brown & Hinton 2001) over sequences of
    ``length`` steps: p(x) proportional to prod_m p_m(x), each p_m an HMM's marginal likelihood.

    Blocks: ``x`` (visible: ``Bernoulli(length * dims)`` for ``emission="bernoulli"``,
    ``Categorical(length, symbols)`` for ``"categorical"``, ``Gaussian(length * dims)`` with scale
    sigma / sqrt(n_hmms) and a fixed zero loc for ``"gaussian"``) and one ``MarkovChain(length,
    n_states)`` path per HMM (``s1``, ``s2``, ...), each with its own initial-state and transition
    factors (``initial1``, ``transition1``, ...: ``ebm.factors.InitialState`` and
    ``ebm.factors.Transition``) and an emission factor ``emission1``, ... between it and x:

        E(x, s) = -sum_m [log pi_m(s^m_1) + sum_t log A_m(s^m_{t-1}, s^m_t) + sum_t log B_m(x_t | s^m_t)].

    Summing the paths out gives F(x) = -sum_m log p_m(x) (forward algorithm, per HMM); block Gibbs
    alternates every path given x (forward filtering, backward sampling; the paths are independent
    given x) and x given the paths (the normalised product of the emissions). Emission parameters
    N(0, init_scale^2) (for Gaussian emissions the means); initial and transition probabilities
    uniform.
    """
    _check_sizes(n_hmms=n_hmms, n_states=n_states, length=length, dims=dims)
    g = Graph()
    if emission == "bernoulli":
        g.add_block("x", Bernoulli(length * dims), visible=True)
    elif emission == "categorical":
        if symbols is None:
            raise ValueError("categorical emissions need the number of symbols (symbols=...)")
        _check_sizes(symbols=symbols)
        g.add_block("x", Categorical(length, symbols), visible=True)
    elif emission == "gaussian":
        scale = torch.full((length * dims,), sigma / n_hmms**0.5)
        g.add_block("x", Gaussian(length * dims, scale=scale, learn_loc=False), visible=True)
    else:
        raise ValueError(
            f"emission must be 'bernoulli', 'categorical' or 'gaussian', got {emission!r}"
        )
    factors = []
    for m in range(1, n_hmms + 1):
        g.add_block(f"s{m}", MarkovChain(length, n_states))
        if emission == "bernoulli":
            f = BernoulliEmission(f"s{m}", "x", init_scale=init_scale, name=f"emission{m}")
        elif emission == "categorical":
            f = CategoricalEmission(f"s{m}", "x", init_scale=init_scale, name=f"emission{m}")
        else:
            f = GaussianEmission(
                f"s{m}",
                "x",
                sigma=sigma,
                scale=sigma / n_hmms**0.5,
                init_scale=init_scale,
                name=f"emission{m}",
            )
        factors += [
            InitialState(f"s{m}", name=f"initial{m}"),
            Transition(f"s{m}", name=f"transition{m}"),
            f,
        ]
    g.add_factor(*factors)
    return EnergyModel(g)


def fas(
    dim: int,
    n_constraints: int,
    scale: float = 1.0,
    shape: float = 1.5,
    init_scale: float = 0.5,
) -> EnergyModel:
    """Product of Student-t constraint experts (FAS; Hinton & Teh 2001, Welling, Hinton & Osindero
    2003) over real x in R^dim, with an added Gaussian term of scale ``scale``:

        F(x) = |x|^2 / 2 s^2 + sum_j alpha_j log(1 + (w_j . x / s)^2 / 2) + constant,

    built with auxiliary precisions: block ``x`` (``Gaussian(dim, scale=s)``, fixed zero loc),
    block ``u`` (``Gamma(n_constraints)``, shapes alpha learned, starting at ``shape``) and the
    factor ``constraints`` (``StudentT``; W (dim, J) ~ N(0, init_scale^2)). Block Gibbs alternates
    u_j | x ~ Gamma(alpha_j, 1 + (w_j . x / s)^2 / 2) and x | u ~ N(0, s^2 (I + W diag(u) W^T)^-1),
    both exact. The Gaussian term keeps the model normalisable with any number of constraints
    (a large ``scale`` makes it weak); summing u out gives the free energy above.
    """
    _check_sizes(dim=dim, n_constraints=n_constraints)
    if not scale > 0 or not shape > 0:
        raise ValueError("scale and shape must be positive")
    g = Graph()
    g.add_block(
        "x", Gaussian(dim, scale=torch.full((dim,), float(scale)), learn_loc=False), visible=True
    )
    g.add_block("u", Gamma(n_constraints, shape=torch.full((n_constraints,), float(shape))))
    g.add_factor(StudentT("x", "u", init_scale=init_scale, name="constraints"))
    return EnergyModel(g)


def upoe(dim: int, n_experts: int, df: float = 5.0) -> EnergyModel:
    """Under-complete product of Student-t experts (Welling, Zemel & Hinton 2003) over whitened x
    in R^dim: J = ``n_experts`` < dim experts on orthonormal projections y = W x and a standard
    Gaussian on the (dim - J)-dimensional complement,

        p(x) = prod_j p_j(w_j . x) N(x_perp; 0, I),

    normalised exactly: block ``x`` (``Gaussian(dim)``, fixed zero loc) and the factor ``experts``
    (``ProjectedStudentT``). The energy model's log Z is (dim - J) log(2 pi) / 2
    (``upoe_log_z``), so its log-likelihood is exact, which makes it the test bench for annealing
    on continuous models. Sampled by HMC.
    """
    _check_sizes(dim=dim, n_experts=n_experts)
    g = Graph()
    g.add_block("x", Gaussian(dim, learn_loc=False), visible=True)
    g.add_factor(ProjectedStudentT("x", n_experts, df=df, name="experts"))
    return EnergyModel(g)


def upoe_log_z(model: EnergyModel) -> float:
    """The exact log Z of an under-complete product of experts (``upoe``), verified first.

    With x's Gaussian units of loc mu and scale s, t = x / s, m = mu / s and orthonormal rows W,

        E(x) = sum_j [-log p_j(y_j) - y_j^2 / 2] + |t - m|^2 / 2,   y = W t,

    splits into the experts on y and a Gaussian on the complement of W's row space, so

        log Z = (D - J) log(2 pi) / 2 + sum_i log s_i     when W m = 0,

    and Z is infinite otherwise (a Student-t times exp(a y) has no finite integral). Before
    answering this checks what the closed form relies on, and raises ValueError with the measured
    figure when it fails: the model is one Gaussian block with one ``ProjectedStudentT`` factor and
    nothing else, every parameter is finite, max |W W^T - I| is within 16 eps sqrt(D) of the
    model's dtype, and |W m| is within the same tolerance.
    """
    from ebm.factors.experts import orthonormality_error

    factors = list(model.factors.values())
    if len(model.blocks) != 1 or len(factors) != 1 or not isinstance(factors[0], ProjectedStudentT):
        raise ValueError(
            "upoe_log_z needs an under-complete product of experts (ebm.models.upoe): one Gaussian "
            f"block and one ProjectedStudentT factor; got blocks {model.blocks} and factors "
            f"{[type(f).__name__ for f in factors]}"
        )
    (block,) = model.blocks
    units, experts = model.units[block], factors[0]
    if not isinstance(units, Gaussian):
        raise ValueError(f"upoe_log_z needs Gaussian units, block {block!r} is {units}")
    for name, value in [*model.named_parameters(), *model.named_buffers()]:
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"upoe_log_z: parameter {name} is not finite")
    with torch.no_grad():
        w = experts.projection.detach().to(torch.float64)
        dim = w.shape[1]
        tol = 16 * torch.finfo(model.dtype).eps * math.sqrt(dim)
        deviation = orthonormality_error(w)
        if not deviation <= tol:
            raise ValueError(
                f"upoe_log_z: the projection's rows are not orthonormal (max |W W^T - I| = "
                f"{deviation:.3g} > {tol:.3g}); the closed form does not hold"
            )
        log_scale = units.log_scale.detach().to(torch.float64)
        tilt = float((w @ (units.loc.detach().to(torch.float64) / log_scale.exp())).abs().max())
        if not tilt <= tol:
            raise ValueError(
                f"upoe_log_z: the Gaussian loc has a component along the experts' projections "
                f"(max |W mu / s| = {tilt:.3g}): a Student-t expert tilted by exp(a y) has no "
                f"finite normaliser, log Z is infinite"
            )
        return 0.5 * (dim - experts.n_experts) * math.log(2 * math.pi) + float(log_scale.sum())


def _param_or_none(value, shape, name):
    if value is None:
        return None
    value = as_float_tensor(value)
    if value.dim() == 0:
        value = value.expand(shape)
    return _finite_param(value, shape, name)


def gated_rbm(
    n_x: int, n_y: int, n_hidden: int, n_factors: int, init_scale: float = 0.1
) -> EnergyModel:
    """Factored gated RBM (Memisevic & Hinton 2010) over binary blocks ``x``, ``y`` (visible) and
    ``h`` (hidden):

        E(x, y, h) = -sum_f (x.Wx_f)(y.Wy_f)(h.Wh_f) - a.x - b.y - c.h,

    with Wx (n_x, F), Wy (n_y, F), Wh (n_hidden, F) ~ N(0, init_scale^2) and zero biases. Given
    x and y, p(h_k = 1) = sigma(c_k + sum_f Wh_kf (x.Wx_f)(y.Wy_f)); y given (x, h) and x given
    (y, h) likewise: block Gibbs cycles the three blocks. As a joint model every block is free;
    as the conditional model p(y | x) of the paper, hold x at the data (``samplers.CD(k,
    clamp=["x"])`` for training, ``BlockGibbs(model, clamp={"x": ...})`` for sampling), where
    the bias a cancels. The hidden units then come to encode the transformation taking x to y.
    """
    _check_sizes(n_x=n_x, n_y=n_y, n_hidden=n_hidden, n_factors=n_factors)
    g = Graph()
    g.add_block("x", Bernoulli(n_x), visible=True)
    g.add_block("y", Bernoulli(n_y), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(
        Factored3Way("x", "y", "h", n_factors, init_scale=init_scale),
        Bias("x"),
        Bias("y"),
        Bias("h"),
    )
    return EnergyModel(g)


def crbm(
    n_visible: int,
    n_hidden: int,
    n_past: int,
    init_scale: float = 0.01,
    visible: str = "bernoulli",
) -> EnergyModel:
    """Conditional RBM (Taylor, Hinton & Roweis 2007) with binary units: an RBM over the current
    frame ``v`` and hidden ``h`` whose biases are set dynamically by the clamped past ``past``
    (the previous frames, concatenated; ``ebm.datasets.lagged`` builds them from sequences):

        E(past, v, h) = -v^T W h - b.v - c.h - past^T A v - past^T B h,

    i.e. visible biases b + A^T past and hidden biases c + B^T past. Blocks ``past`` and ``v`` are
    visible; hold ``past`` at the data (``samplers.CD(k, clamp=["past"])`` to train p(v | past),
    ``BlockGibbs(model, clamp={"past": ...})`` to sample, one frame after another, and
    ``estimators.exact_conditional_log_likelihood(model, data, given=["past"])`` to evaluate).
    W, A, B ~ N(0, init_scale^2); biases zero.

    ``visible="gaussian"`` gives real-valued frames (the motion-capture model of the paper):
    ``past`` and ``v`` are unit-variance ``Gaussian`` blocks, E gains |v - b|^2 / 2 in place of
    -b.v (b is the units' ``loc``), and v | h, past ~ N(b + W h + A^T past, I).
    """
    _check_sizes(n_visible=n_visible, n_hidden=n_hidden, n_past=n_past)
    if visible not in ("bernoulli", "gaussian"):
        raise ValueError(f"visible must be 'bernoulli' or 'gaussian', got {visible!r}")
    frames = Gaussian if visible == "gaussian" else Bernoulli
    g = Graph()
    g.add_block("past", frames(n_past), visible=True)
    g.add_block("v", frames(n_visible), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    factors = [
        Dense("v", "h", init_scale=init_scale),
        Dense("past", "v", init_scale=init_scale, name="autoregressive"),
        Dense("past", "h", init_scale=init_scale, name="past_to_hidden"),
    ]
    if visible == "bernoulli":  # Gaussian units carry their bias as loc
        factors.append(Bias("v"))
    g.add_factor(*factors, Bias("h"))
    return EnergyModel(g)


def fcrbm(
    n_visible: int,
    n_hidden: int,
    n_past: int,
    n_styles: int,
    n_factors: int,
    init_scale: float = 0.1,
) -> EnergyModel:
    """Factored conditional RBM (Taylor & Hinton 2009), binary units: a CRBM whose three weight
    matrices are gated by a style label z (block ``style``, one-hot over ``n_styles``), each
    through its own factored three-way term:

        E = -sum_f (v.Wv_f)(h.Wh_f)(z.Wz_f) - sum_f (past.Ap_f)(v.Av_f)(z.Az_f)
            - sum_f (past.Bp_f)(h.Bh_f)(z.Bz_f) - b.v - c.h,

    so each style has its own effective weights W(z), autoregressive A(z) and past-to-hidden
    B(z) built from shared factors. ``past`` and ``style`` are held at the data: train p(v |
    past, style) with ``samplers.CD(k, clamp=["past", "style"])`` and evaluate it with
    ``estimators.exact_conditional_log_likelihood(model, data, given=["past", "style"])``.
    """
    _check_sizes(n_visible=n_visible, n_hidden=n_hidden, n_past=n_past, n_factors=n_factors)
    g = Graph()
    g.add_block("past", Bernoulli(n_past), visible=True)
    g.add_block("style", Categorical(1, n_styles), visible=True)
    g.add_block("v", Bernoulli(n_visible), visible=True)
    g.add_block("h", Bernoulli(n_hidden))
    g.add_factor(
        Factored3Way("v", "h", "style", n_factors, init_scale=init_scale, name="weights"),
        Factored3Way("past", "v", "style", n_factors, init_scale=init_scale, name="autoregressive"),
        Factored3Way("past", "h", "style", n_factors, init_scale=init_scale, name="past_to_hidden"),
        Bias("v"),
        Bias("h"),
    )
    return EnergyModel(g)


def checkerboard_ising(rows: int, cols: int, horizontal, vertical, field=None) -> EnergyModel:
    """An Ising model on an open ``rows`` x ``cols`` grid of spins s in {-1, +1},

        E(s) = -sum_{r, c} [H_rc s_rc s_r,c+1 + V_rc s_rc s_r+1,c] - sum_rc h_rc s_rc,

    written as an RBM over the grid's checkerboard: block ``black`` (visible: the sites with
    r + c even) and block ``white`` (the others), both ``Spin`` units in row-major order, one
    ``Dense`` factor ``couplings`` holding the nearest-neighbour couplings (zero elsewhere) and
    ``Bias`` factors ``field_black`` / ``field_white`` for h. Neighbours always differ in colour,
    so each colour is conditionally independent given the other: block Gibbs sweeps the two
    halves, one half is summed out exactly and AIS anneals the other. ``horizontal`` (rows,
    cols - 1) and ``vertical`` (rows - 1, cols) give the couplings, ``field`` (rows, cols) h
    (default 0). For evaluating fixed couplings (a spin glass with random signs is strongly
    frustrated): training would move the zero weights off the lattice. The coupling matrix is
    dense, (rows cols / 2)^2 entries: grids of more than about 2^15 sites are refused by name.
    """
    _check_sizes(rows=rows, cols=cols)
    if rows * cols < 2:
        raise ValueError("a checkerboard needs at least 2 sites")
    horizontal = _finite_param(horizontal, (rows, cols - 1), "horizontal")
    vertical = _finite_param(vertical, (rows - 1, cols), "vertical")
    dtype = torch.promote_types(horizontal.dtype, vertical.dtype)
    field = _finite_param(field, (rows, cols), "field", default=0.0)
    black = [(r, c) for r in range(rows) for c in range(cols) if (r + c) % 2 == 0]
    white = [(r, c) for r in range(rows) for c in range(cols) if (r + c) % 2 == 1]
    if len(black) * len(white) > 2**28:
        raise ValueError(
            f"checkerboard_ising({rows}, {cols}) would hold a dense {len(black):,} x "
            f"{len(white):,} coupling matrix (more than 2^28 entries) for {2 * rows * cols:,} "
            f"couplings; grids this large need a sparse coupling, which this constructor lacks"
        )
    index = {site: i for i, site in enumerate(black)} | {site: i for i, site in enumerate(white)}
    weight = torch.zeros(len(black), len(white), dtype=dtype)
    for (r, c), j in [((r, c), (r, c + 1)) for r in range(rows) for c in range(cols - 1)]:
        a, b = ((r, c), j) if (r + c) % 2 == 0 else (j, (r, c))
        weight[index[a], index[b]] = horizontal[r, c]
    for (r, c), j in [((r, c), (r + 1, c)) for r in range(rows - 1) for c in range(cols)]:
        a, b = ((r, c), j) if (r + c) % 2 == 0 else (j, (r, c))
        weight[index[a], index[b]] = vertical[r, c]
    g = Graph()
    g.add_block("black", Spin(len(black)), visible=True)
    g.add_block("white", Spin(len(white)))
    g.add_factor(
        Dense("black", "white", weight=weight, name="couplings"),
        Bias("black", torch.stack([field[s] for s in black]), name="field_black"),
        Bias("white", torch.stack([field[s] for s in white]), name="field_white"),
    )
    return EnergyModel(g)
