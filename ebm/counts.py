"""Count units: a block that is a vector of word counts, the visible layer of document models.

A ``Multinomial(k, length)`` block holds v in {0, 1, ...}^k with sum_i v_i = D, the length. It is
the block of D replicated softmax units (Salakhutdinov & Hinton 2009) written as counts: D words,
each one of k, whose energy depends on the words only through how often each occurs. With
t(v) = v and the base energy

    E_0(v) = -log (D! / prod_i v_i!)      (minus the log number of word orders with these counts),

a factor's linear terms -eta . v give the conditional v ~ Multinomial(D, softmax(eta)) and

    A(eta) = log sum_v (D! / prod_i v_i!) exp(eta . v) = D logsumexp(eta).

Summing over count vectors with the base energy is summing over the k^D word sequences, so the
normaliser of a model with such a block is that of its sequence model; log p(counts) = log p(the
word sequence) + log (D! / prod v_i!).

The length is either fixed (``length=D``: the block's states are the C(D + k - 1, k - 1) count
vectors of that length, which it enumerates, draws at random and sums out) or taken from the data
(``length=None``): each row of a state keeps its own length, every conditional draw keeps the
length of the row it replaces (``state_keywords``), and what needs a length the data do not give
(enumeration, a log-partition of the block summed out, a base distribution) is refused until the
model is fixed at a length (``ebm.documents.at_length``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, distributions

from ebm.units import UNIT_TYPES, Units

__all__ = ["Multinomial", "MultinomialCounts", "log_multinomial_coefficient"]


def log_multinomial_coefficient(v: Tensor) -> Tensor:
    """log (D! / prod_i v_i!) per row of counts v (batch, k), D = sum_i v_i: shape (batch,)."""
    return torch.lgamma(v.sum(-1) + 1) - torch.lgamma(v + 1).sum(-1)


def _check_length(length):
    """None, an int >= 1, or a 1-D tensor of ints >= 1 (one length per chain)."""
    if isinstance(length, Tensor):
        if length.dim() != 1 or length.numel() == 0 or length.is_floating_point():
            raise ValueError("Multinomial: per-chain lengths are a non-empty 1-D integer tensor")
        if bool((length < 1).any()):
            raise ValueError("Multinomial: every per-chain length must be >= 1")
        return length.to(torch.int64)
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 1
    ):
        raise ValueError(
            f"Multinomial: the length must be an int >= 1 (the number of words), or None to "
            f"take it from the data; got {length!r}"
        )
    return length


def _length_tensor(length, like: Tensor) -> Tensor:
    """The length as a tensor broadcasting against the rows of ``like`` (shape (batch,) or ())."""
    return torch.as_tensor(length, device=like.device, dtype=like.dtype)


@lru_cache(maxsize=64)
def _binomial_table(top: int, k: int) -> Tensor:
    """C(b, j) for b in [0, top) and j in [0, k): int64, shape (k, top); the columns past int64
    are never needed (enumeration stops long before)."""
    table = torch.zeros((k, top), dtype=torch.int64)
    for j in range(k):
        for b in range(top):
            value = math.comb(b, j)
            table[j, b] = value if value < 2**62 else 2**62
    return table


class Multinomial(Units):
    """A vector of k counts summing to a length D: ``D`` words, each one of ``k`` (a vocabulary).

    p(v | eta) = (D! / prod v_i!) prod_i softmax(eta)_i^v_i, the conditional of D softmax units
    sharing their natural parameters; mean D softmax(eta); A(eta) = D logsumexp(eta).

    ``length``: an int >= 1 fixes D for every row (the block enumerates, starts chains and is
    summed out at that length); None takes D from the data, one per row, kept by every draw.
    Data must be non-negative integer counts (fixed length: summing to it; data length: to at
    least 1), refused by the block's name otherwise.
    """

    has_base_energy = True

    def __init__(self, k: int, length: int | Tensor | None = None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"Multinomial: the vocabulary size k must be an int >= 2, got {k!r}")
        super().__init__(k)
        self.k = k
        self.length = _check_length(length)

    @property
    def per_chain(self) -> bool:
        """Whether the length is one per chain (a 1-D tensor): a batch of chains at several
        fixed lengths, annealed together (``estimators.log_z_by_length``)."""
        return isinstance(self.length, Tensor)

    # --- description -------------------------------------------------------------------------
    @property
    def discrete(self) -> bool:
        return True

    @property
    def num_states(self) -> int:
        """C(D + k - 1, k - 1): the count vectors of length D over k words."""
        return math.comb(self._fixed_length() + self.k - 1, self.k - 1)

    @property
    def log2_num_states(self) -> float:
        d, k = self._fixed_length(), self.k
        return (math.lgamma(d + k) - math.lgamma(d + 1) - math.lgamma(k)) / math.log(2)

    def config(self) -> dict[str, Any]:
        if self.per_chain:
            raise ValueError(
                "Multinomial units with one length per chain are not saved: save the model "
                "that ebm.documents.at_length was given"
            )
        return {"k": self.k, "length": self.length}

    def extra_repr(self) -> str:
        length = f"{len(self.length)} per-chain lengths" if self.per_chain else self.length
        return f"k={self.k}, length={length}"

    def _fixed_length(self) -> int:
        if self.per_chain:
            raise ValueError(
                f"Multinomial(k={self.k}) units with one length per chain cannot be enumerated "
                f"or counted: fix one length with ebm.documents.at_length(model, {{block: D}})"
            )
        if self.length is None:
            raise ValueError(
                f"Multinomial(k={self.k}) units take their length from the data: fix it with "
                f"ebm.documents.at_length(model, {{block: D}}) to enumerate the block, sum it out, "
                f"start chains or anneal from a base"
            )
        return self.length

    def _length(self, length, like: Tensor) -> Tensor:
        """The length to use: the one given (from the state) or the block's fixed one (one per
        row of ``like`` when the block has per-chain lengths)."""
        if length is None:
            if self.per_chain:
                if like.shape[0] != len(self.length):
                    raise ValueError(
                        f"Multinomial units with {len(self.length)} per-chain lengths got "
                        f"{like.shape[0]} rows"
                    )
                return self.length.to(device=like.device, dtype=like.dtype)
            length = self._fixed_length()
        return _length_tensor(length, like)

    # --- the exponential family ---------------------------------------------------------------
    def state_keywords(self, x: Tensor) -> dict[str, Tensor]:
        """The length of each row of the current state ``x``, which a conditional draw keeps:
        ``{"length": (batch,)}`` when the length comes from the data, else nothing."""
        return {"length": x.sum(-1)} if self.length is None else {}

    @property
    def takes_state_keywords(self) -> bool:  # a property here, a class attribute on Units
        return self.length is None

    def summary(self, x: Tensor) -> Tensor:
        """The mean word number (0 .. k-1) over the words of each row: the mean count is D / k
        whatever the state, so it cannot show a chain moving."""
        words = torch.arange(self.k, device=x.device, dtype=x.dtype)
        return (x @ words) / x.sum(-1).clamp_min(1)

    def base_energy(self, x: Tensor) -> Tensor:
        return -log_multinomial_coefficient(x)

    def distribution(self, natural: Tensor, length=None) -> distributions.Distribution:
        return MultinomialCounts(self._length(length, natural), logits=natural)

    def sample(
        self, natural: Tensor, generator: torch.Generator | None = None, length=None
    ) -> Tensor:
        """Counts of D draws from softmax(natural) per row, D the row's length: the words are
        drawn by inverse CDF (float64) from the generator's uniforms and counted."""
        d = self._length(length, natural).to(torch.int64).expand(natural.shape[0]).reshape(-1)
        return _multinomial_counts(natural.detach(), d, generator)

    def mean(self, natural: Tensor, length=None) -> Tensor:
        d = self._length(length, natural)
        return (d.unsqueeze(-1) if d.dim() else d) * torch.softmax(natural, -1)

    def log_partition(self, natural: Tensor, length=None) -> Tensor:
        return self._length(length, natural) * torch.logsumexp(natural, -1)

    def random(
        self, num_chains: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> Tensor:
        """Uniform words at the fixed length; with a data length, lengths uniform in 1..k (a
        starting point: chains keep their lengths)."""
        ref = self._reference(device, dtype)
        natural = ref.new_zeros((num_chains, self.k))
        length = self.length
        if self.per_chain:
            return self.sample(natural, generator)  # checks the number of chains
        if length is None:
            where = generator.device if generator is not None else ref.device
            length = torch.randint(1, self.k + 1, (num_chains,), generator=generator, device=where)
        return self.sample(
            natural,
            generator,
            length=length.to(ref.device) if isinstance(length, Tensor) else length,
        )

    def _check_support(self, x: Tensor, name: str) -> None:
        bad = (x < 0) | (x != torch.round(x)) if x.is_floating_point() else x < 0
        if bool(bad.any()):
            idx = bad.nonzero()[0].tolist()
            raise ValueError(
                f"block {name!r}: Multinomial data must be non-negative integer counts; the value "
                f"at {idx} is {x[tuple(idx)].item()}"
            )
        totals = x.sum(-1)
        if self.per_chain:
            wrong = totals != self._length(None, x)
        else:
            wrong = totals != self.length if self.length is not None else totals < 1
        if bool(wrong.any()):
            row = int(wrong.nonzero()[0, 0])
            want = (
                "hold at least one word"
                if self.length is None
                else f"sum to the length {int(self._length(None, x)[row]) if self.per_chain else self.length}"
            )
            raise ValueError(
                f"block {name!r}: every row of Multinomial counts must {want}; row {row} sums to "
                f"{totals[row].item():g}"
            )

    # --- enumeration ---------------------------------------------------------------------------
    def states(self, index: Tensor, device=None, dtype=None) -> Tensor:
        """The count vectors numbered ``index``: number r is the combination of bar positions
        b_1 < ... < b_{k-1} in the D + k - 1 slots of D words and k - 1 bars with
        r = sum_j C(b_j, j) (the combinatorial number system)."""
        d, k = self._fixed_length(), self.k
        table = _binomial_table(d + k - 1, k).to(index.device)
        rank = index.to(torch.int64).clone()
        bars = torch.empty((len(rank), k - 1), dtype=torch.int64, device=index.device)
        for j in range(k - 1, 0, -1):
            b = torch.searchsorted(table[j], rank, right=True) - 1
            bars[:, j - 1] = b
            rank -= table[j][b]
        words_before = bars - torch.arange(k - 1, device=index.device)  # words left of bar j
        edges = torch.cat(
            [
                words_before.new_zeros((len(rank), 1)),
                words_before,
                words_before.new_full((len(rank), 1), d),
            ],
            1,
        )
        dtype = dtype or torch.get_default_dtype()
        return edges.diff(dim=1).to(device=device, dtype=dtype)

    def index(self, x: Tensor) -> Tensor:
        d, k = self._fixed_length(), self.k
        table = _binomial_table(d + k - 1, k).to(x.device)
        counts = torch.round(x).to(torch.int64)
        bars = counts.cumsum(-1)[:, : k - 1] + torch.arange(k - 1, device=x.device)
        order = torch.arange(1, k, device=x.device).expand_as(bars)
        return table[order, bars].sum(-1)


def _multinomial_counts(natural: Tensor, lengths: Tensor, generator) -> Tensor:
    """Counts (rows, k) of ``lengths[r]`` categorical draws from softmax(natural[r]) per row r,
    in the dtype of ``natural`` (counts are exact integers there up to 2^24).

    Inverse CDF: the row's cumulative probabilities (exp(natural - max) in the parameters'
    precision, converted, summed and normalised in float64) are searched for the row's D
    uniforms, drawn already sorted (``_sorted_uniforms``: the counts depend only on the set of
    uniforms, and sorted queries walk the cumulative probabilities in order), and the words
    counted. Where padding every row to the longest costs at most twice the words drawn (equal
    lengths: a fixed-length block), the rows are searched side by side (``_padded_draw``: a
    search within one row of k entries); otherwise the rows' cumulative probabilities are laid
    end to end (``_flat_draw``: one search over rows x k entries, nothing padded). Cost
    O(rows x k) for the probabilities plus O(words x log k) or O(words x log(rows k))."""
    rows, k = natural.shape
    total = int(lengths.sum())
    if total == 0:
        return torch.zeros(rows, k, dtype=natural.dtype, device=natural.device)
    weights = torch.exp(natural - natural.max(-1, keepdim=True).values)
    # converted before the sum: cumsum's own dtype argument takes a far slower path on the CPU
    cdf = weights.double().cumsum_(-1)
    cdf /= cdf[:, -1:].clone()
    cdf[:, -1] = 1.0
    if rows * int(lengths.max()) <= 2 * total:
        return _padded_draw(cdf, lengths, generator, natural.dtype)
    return _flat_draw(cdf, lengths, total, generator, natural.dtype)


def _padded_draw(cdf: Tensor, lengths: Tensor, generator, dtype) -> Tensor:
    """Row r's D_r uniforms, sorted, as (E_1 + ... + E_i) / (E_1 + ... + E_{D_r + 1}) for
    i <= D_r from one row of standard exponentials (the order statistics of D_r uniforms); the
    padding beyond D_r lands above 1 and is not counted."""
    rows, k = cdf.shape
    longest = int(lengths.max())
    lengths = lengths.to(cdf.device)
    spacings = torch.empty(rows, longest + 1, device=cdf.device, dtype=torch.float64)
    sums = spacings.exponential_(generator=generator).cumsum_(-1)
    u = sums[:, :longest] / sums.gather(1, lengths[:, None])
    position = torch.searchsorted(cdf, u, right=True).clamp_(max=k - 1)
    present = torch.arange(longest, device=cdf.device)[None, :] < lengths[:, None]
    counts = torch.zeros(rows, k, dtype=dtype, device=cdf.device)
    return counts.scatter_add_(1, position, present.to(dtype))


def _sorted_uniforms(lengths: Tensor, total: int, generator) -> tuple[Tensor, Tensor]:
    """(u, row of each word): each row's D_r uniforms in ascending order, rows one after the
    other, from one run of standard exponentials E (D_r + 1 per row): the partial sums of a
    row's E over their total are the order statistics of D_r uniforms."""
    rows, device = lengths.numel(), lengths.device
    sums = torch.empty(total + rows, device=device, dtype=torch.float64)
    sums.exponential_(generator=generator).cumsum_(0)
    last = torch.cumsum(lengths + 1, 0) - 1  # each row's (D_r + 1)-th exponential
    before = last - lengths - 1  # the entry before the row's first; -1 for the first row
    base = torch.where(before >= 0, sums[before.clamp_min(0)], torch.zeros_like(sums[last]))
    row_of_word = torch.repeat_interleave(torch.arange(rows, device=device), lengths)
    index = torch.arange(total, device=device) + row_of_word  # skips each earlier row's last
    u = (sums[index] - base[row_of_word]) / (sums[last] - base)[row_of_word]
    return u, row_of_word


def _flat_draw(cdf: Tensor, lengths: Tensor, total: int, generator, dtype) -> Tensor:
    rows, k = cdf.shape
    u, row_of_word = _sorted_uniforms(lengths.to(cdf.device), total, generator)
    offsets = torch.arange(rows, device=cdf.device, dtype=torch.float64)
    flat = (cdf + offsets[:, None]).reshape(-1)
    position = torch.searchsorted(flat, row_of_word.double() + u, right=True)
    # a uniform at the very top of a row's range rounds onto the next row's first entry
    position = torch.minimum(position, row_of_word * k + (k - 1))
    counts = torch.zeros(rows * k, dtype=dtype, device=cdf.device)
    counts.index_add_(0, position, torch.ones(total, dtype=dtype, device=cdf.device))
    return counts.reshape(rows, k)


class MultinomialCounts(distributions.Distribution):
    """Multinomial counts with one total per row (``torch.distributions.Multinomial`` takes a
    single int): log p(v) = log (D! / prod v_i!) + sum_i v_i log softmax(logits)_i."""

    arg_constraints = {"logits": distributions.constraints.real_vector}
    support = distributions.constraints.nonnegative_integer
    has_enumerate_support = False

    def __init__(self, total_count: Tensor, logits: Tensor, validate_args=None):
        self.logits = logits
        self.total_count = torch.as_tensor(total_count, dtype=logits.dtype).expand(
            logits.shape[:-1]
        )
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits, -1)

    @property
    def mean(self) -> Tensor:
        return self.total_count.unsqueeze(-1) * self.probs

    @property
    def variance(self) -> Tensor:
        p = self.probs
        return self.total_count.unsqueeze(-1) * p * (1 - p)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        logits = self.logits.expand(*shape, *self.event_shape).reshape(-1, self.event_shape[0])
        lengths = self.total_count.expand(shape).reshape(-1).to(torch.int64)
        with torch.no_grad():
            draws = _multinomial_counts(logits, lengths, None)
        return draws.reshape(*shape, *self.event_shape).to(self.logits.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        log_p = torch.log_softmax(self.logits, -1)
        return log_multinomial_coefficient(value) + (value * log_p).sum(-1)


UNIT_TYPES["Multinomial"] = Multinomial
