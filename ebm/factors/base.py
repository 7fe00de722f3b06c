"""The Factor abstraction: one energy term over one or more blocks, owning its parameters."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import torch
from torch import Tensor, nn

from ebm.units import _finite_param, as_float_tensor

__all__ = ["Factor", "natural_from_energy", "FACTOR_TYPES", "register", "check_init_scale"]

#: registry of factor classes by class name, used when loading a saved model
FACTOR_TYPES: dict[str, type[Factor]] = {}


def register(cls: type[Factor]) -> type[Factor]:
    """Register a Factor subclass so that ``ebm.load`` can rebuild saved models that use it.

    Usable as a class decorator. The class is rebuilt as ``cls.from_config(config)``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Factor)):
        raise TypeError(f"register expects a Factor subclass, got {cls!r}")
    FACTOR_TYPES[cls.__name__] = cls
    return cls


def _encode(value: Any) -> Any:
    """A constructor argument as JSON: tensors and arrays as tagged nested lists, tuples tagged,
    lists and str-keyed dicts recursively; TypeError for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor) or type(value).__module__ == "numpy":
        t = torch.as_tensor(value).detach().cpu()
        return {"__tensor__": t.tolist(), "dtype": str(t.dtype).removeprefix("torch.")}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if any(k.startswith("__") for k in value):
            raise TypeError(f"dict keys starting with '__' are reserved, got {sorted(value)}")
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(
        f"{type(value).__name__} {value!r} is not a number, string, tensor or container"
    )


def _decode(value: Any) -> Any:
    """The inverse of ``_encode``."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            dtype = getattr(torch, value["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown tensor dtype {value['dtype']!r} in a factor config")
            return torch.tensor(value["__tensor__"], dtype=dtype)
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    return value


def check_init_scale(value) -> float:
    """``init_scale`` as a float, or ValueError unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"init_scale must be a number >= 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"init_scale must be a finite number >= 0, got {value!r}")
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Factor(nn.Module):
    """One energy term E_f over the blocks ``blocks``.

    A factor sees each block through the unit type's sufficient statistic t (the state itself for
    discrete units) and must give ``energy(stats) -> (batch,)``. For every block it touches it may
    also give its additive contribution to that block's natural parameters,

        natural(target, stats) = -dE_f / dt_target,

    which is exact when E_f is linear in t_target (the usual case: biases, bilinear couplings,
    third-order terms across distinct blocks). A factor that only implements ``energy`` gets
    ``natural`` from autograd. ``offset(target, stats)`` is E_f with t_target set to zero: with
    linearity, E_f = offset - natural . t_target, which is what summing the block out needs.

    A factor may instead be *quadratic* in a block whose unit type takes a quadratic term
    (``Units.quadratic_keyword``): E_f = offset - natural . t + units.quadratic_energy(t, q), with
    ``natural`` and ``quadratic(target, stats) = q`` both independent of t_target. For a Gaussian
    block q is a precision Q and the term t^T Q t / 2 (implement ``precision``): the conditional is
    a correlated Gaussian (mcRBM's covariance units). For a ``MarkovChain`` path q is a matrix L of
    log transition potentials and the term -sum_t s_{t-1}^T L s_t (``ebm.factors.Transition``): the
    conditional is an HMM posterior. The Graph checks this form numerically too.

    ``bind(shapes)`` is called once by the Graph with the shapes of the blocks the factor touches;
    create parameters there when their shape depends on the blocks.

    ``natural_product`` (optional): the contribution as one matrix product x w, for backends
    that run products on kernels of their own (``ebm.backend``).

    ``no_weight_decay`` (class attribute, default empty): names of the factor's parameters that
    ``fit``'s weight decay must leave alone, such as the unconstrained matrix behind a constrained
    weight, whose scale carries no meaning.
    """

    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, *blocks: str, name: str | None = None):
        super().__init__()
        if not blocks:
            raise ValueError(f"{type(self).__name__}: a factor must touch at least one block")
        for b in blocks:
            if not isinstance(b, str) or not b:
                raise ValueError(
                    f"{type(self).__name__}: block names must be non-empty strings, got {b!r}"
                )
        self.blocks: tuple[str, ...] = tuple(blocks)
        #: blocks in which the energy was found not to be linear (set by the Graph's probe)
        self.nonlinear_blocks: frozenset[str] = frozenset()
        #: blocks in which the energy was found to be quadratic, of the declared form (ditto)
        self.quadratic_blocks: frozenset[str] = frozenset()
        #: blocks whose units the factor couples with each other (``unit_couplings``; set by the
        #: Graph, which checks that the energy is linear in each of their units)
        self.coupled_blocks: frozenset[str] = frozenset()
        self.name = name or f"{_snake(type(self).__name__)}_{'_'.join(blocks)}"
        if "." in self.name:
            raise ValueError(f"factor name {self.name!r} must not contain '.'")

    # --- to override ---------------------------------------------------------------------------
    def bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Create or check parameters for the given block shapes (raise ValueError on mismatch)."""

    def energy(self, stats: dict[str, Tensor]) -> Tensor:
        """E_f evaluated on a batch of states (given as statistics): shape (batch,)."""
        raise NotImplementedError(f"{type(self).__name__} must implement energy(stats)")

    def natural(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        """Contribution to the natural parameters of ``target``: -dE_f/dt_target, like t_target."""
        return natural_from_energy(self, target, stats)

    def natural_product(
        self, target: str, stats: dict[str, Tensor], matmul=torch.mm, mul=torch.mul
    ):
        """(x, w) when this factor's contribution to ``target`` is one matrix product,
        natural(target, stats) = (x @ w).reshape(batch, *target's shape), with x of shape
        (batch, k) and w of shape (k, n); None (the default) otherwise. A backend uses it to run
        the product on its own kernel; ``matmul`` and ``mul`` are that backend's matrix and
        elementwise products, for what the operands themselves need (the result of ``mul`` may
        be a buffer the backend reuses: use it for the returned x only)."""
        return None

    def precision(self, target: str, stats: dict[str, Tensor]) -> Tensor | None:
        """For a Gaussian ``target``: the quadratic coefficient Q of t_target in E_f
        (E_f = offset - natural . t + t^T Q t / 2), shape (batch, size, size); None (the default)
        when E_f is linear in t_target."""
        return None

    def quadratic(self, target: str, stats: dict[str, Tensor]) -> Tensor | None:
        """The quadratic coefficient of t_target in E_f in the form of the target's unit type
        (``Units.quadratic_energy``); None when E_f is linear in t_target. Defaults to
        ``precision``."""
        return self.precision(target, stats)

    def unit_couplings(self, block: str) -> Tensor | None:
        """The pairs of units of ``block`` (numbered along its first axis) that this factor couples
        with each other, an (m, 2) int64 tensor, or None (the default) when it couples none: its
        energy is then linear (or quadratic) in the block's statistic as a whole. A factor that
        couples units must be linear in each unit's statistic, so that a unit's conditional given
        all the others is of its unit type's family; the Graph colours the units by these pairs
        (``Graph.schedule``) and checks the linearity numerically."""
        return None

    def natural_units(self, target: str, stats: dict[str, Tensor], index: Tensor) -> Tensor:
        """The natural parameters of the units ``index`` of ``target`` (an int64 tensor of unit
        numbers along its first axis), shape (batch, len(index), *trailing): -dE_f/dt_i for each,
        exact when no two of them share a term. Defaults to ``natural(target, stats)[:, index]``;
        factors with ``unit_couplings`` compute only these units. The result may be a broadcast
        view (a bias expanded over the chains) but never a view of a parameter itself: a caller
        may write into it when it is contiguous."""
        return self.natural(target, stats)[:, index]

    def natural_rows(self, target: str, stats: dict[str, Tensor], index: Tensor):
        """(row offsets, column, value): ``natural_units(target, stats, index)`` as the rows of a
        sparse |index| x n matrix against t_target (eta_c = sum over row c of value * t[column])
        when this factor's contribution is one such product, for a backend's own sparse kernel;
        None (the default) otherwise."""
        return None

    def coupling_terms(self, block: str) -> list[tuple[Tensor, Tensor]] | None:
        """The terms by which this factor couples units of ``block``, for computations over single
        units (variable elimination): [(terms (m, k) int64, weights (m,))] per order, the energy
        being -sum_r w_r prod_{i in term r} t_i (dot products of vector statistics for pairs);
        None (the default) for a factor that gives no such form."""
        return None

    def interacts(self, a: str, b: str) -> bool:
        """Whether the energy has a term that depends on blocks ``a`` and ``b`` jointly (default:
        True for any two of the factor's blocks). A factor that is a sum of terms each touching
        one of them (a bias shared by two blocks) says False: the blocks are then not joined in
        the block graph, may share a colour class and may be summed out together. The Graph
        checks a False numerically (E(a, b) - E(0, b) - E(a, 0) + E(0, 0) = 0 at random
        states)."""
        return True

    def couples_units(self, block: str) -> bool:
        """Whether this factor couples units of ``block`` with each other (see
        ``unit_couplings``)."""
        return block in self.coupled_blocks

    def offset(self, target: str, stats: dict[str, Tensor]) -> Tensor:
        """E_f with the statistic of ``target`` set to zero: shape (batch,) or a scalar."""
        zeroed = dict(stats)
        zeroed[target] = torch.zeros_like(stats[target])
        return self.energy(zeroed)

    def initial(self, value, what: str) -> Tensor | None:
        """A user-given initial value for parameter ``what``: a finite float tensor (a floating
        dtype kept as given), or None."""
        if value is None:
            return None
        t = as_float_tensor(value)
        return _finite_param(t, tuple(t.shape), f"{self.name}.{what}")

    def make_parameter(
        self, initial: Tensor | None, shape: tuple[int, ...], what: str, default
    ) -> nn.Parameter:
        """``initial`` as a parameter when given (it must have ``shape``), else ``default(shape)``."""
        shape = tuple(shape)
        if torch.empty(0).is_meta:  # a shapes-only build (ebm.io): shape without initialising
            return nn.Parameter(torch.empty(shape))
        if initial is None:
            return nn.Parameter(default(shape))
        if tuple(initial.shape) != shape:
            where = " x ".join(repr(b) for b in self.blocks)
            raise ValueError(
                f"factor {self.name!r}: {what} has shape {tuple(initial.shape)} but "
                f"block(s) {where} need {shape}"
            )
        return nn.Parameter(initial)

    def linear_in(self, block: str) -> bool:
        """Whether E_f is linear in the statistic of ``block`` (so it can be summed out exactly and
        the block's conditional is of its unit type's family). The Graph checks this numerically
        when the factor is added."""
        return (
            self.blocks.count(block) == 1
            and block not in self.coupled_blocks
            and block not in self.nonlinear_blocks
            and block not in self.quadratic_blocks
        )

    def quadratic_in(self, block: str) -> bool:
        """Whether E_f is quadratic in the statistic of ``block`` in the declared form (checked
        numerically by the Graph): the block's conditional is then a correlated Gaussian."""
        return block in self.quadratic_blocks and block not in self.nonlinear_blocks

    def __init_subclass__(cls, **kwargs) -> None:
        """Record the arguments of every construction (the outermost ``__init__`` call), so that
        the default ``config()`` can give them back."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if "_init_call" not in self.__dict__:
                object.__setattr__(self, "_init_call", (args, kw))
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments; parameters are saved separately.

        The default gives back the arguments this factor was constructed with, positional and
        keyword (numbers, strings, booleans, None, tensors and arrays, and lists, tuples and
        dicts of these), so that ``from_config`` rebuilds the same factor. An argument of another
        kind (a function, an object) raises ValueError naming it: such a factor must define
        ``config()`` and ``from_config()`` itself. ``ebm.load`` checks the rebuilt model's
        energies against those saved, so a config that misses something is refused on load.
        """
        call = self.__dict__.get("_init_call")
        if call is None:
            return {"blocks": list(self.blocks), "name": self.name}
        args, kw = call
        try:
            return {
                "__call__": {
                    "args": [_encode(a) for a in args],
                    "kwargs": {k: _encode(v) for k, v in kw.items()},
                }
            }
        except TypeError as err:
            raise ValueError(
                f"factor {self.name!r} ({type(self).__name__}): a constructor argument cannot be "
                f"saved ({err}); define config() and from_config() on the class"
            ) from err

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Factor:
        config = dict(config)
        if "__call__" in config:
            call = config["__call__"]
            args = [_decode(a) for a in call["args"]]
            return cls(*args, **{k: _decode(v) for k, v in call["kwargs"].items()})
        return cls(*config.pop("blocks"), **config)

    def extra_repr(self) -> str:
        return f"{', '.join(map(repr, self.blocks))}, name={self.name!r}"


def natural_from_energy(factor: Factor, target: str, stats: dict[str, Tensor]) -> Tensor:
    """-dE_f/dt_target by autograd, evaluated at the current statistics.

    The gradient keeps its graph to the parameters when grad mode is on, so free energies built on it
    can be differentiated for training.
    """
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        t = stats[target].detach().requires_grad_(True)
        local = dict(stats)
        local[target] = t
        e = factor.energy(local)
        (grad,) = torch.autograd.grad(e.sum(), t, create_graph=keep_graph, allow_unused=True)
    if grad is None:
        return torch.zeros_like(t)
    return -grad


def flat_size(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
