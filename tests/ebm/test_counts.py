"""Count units (``ebm.counts.Multinomial``) against sums over word sequences written here."""

import itertools
import math

import pytest
import torch

from ebm.counts import Multinomial, MultinomialCounts, log_multinomial_coefficient
from tests.helpers import noise_floor, total_variation


def _sequences(k: int, d: int) -> torch.Tensor:
    """The count vector of every one of the k^d word sequences of length d (with repeats)."""
    rows = []
    for seq in itertools.product(range(k), repeat=d):
        v = [0] * k
        for word in seq:
            v[word] += 1
        rows.append(v)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(("k", "d"), [(2, 1), (3, 4), (5, 3), (4, 6)])
def test_states_number_every_count_vector_once(k, d):
    units = Multinomial(k, d)
    assert units.num_states == math.comb(d + k - 1, k - 1)
    assert units.log2_num_states == pytest.approx(math.log2(units.num_states))
    states = units.states(torch.arange(units.num_states), dtype=torch.float64)
    expected = {tuple(r) for r in _sequences(k, d).tolist()}
    got = [tuple(r) for r in states.tolist()]
    assert len(set(got)) == len(got) == len(expected)
    assert set(got) == expected
    assert torch.equal(units.index(states), torch.arange(units.num_states))


def test_log_partition_and_mean_are_sums_over_word_sequences():
    """A(eta) = log sum over the k^D sequences of exp(eta . v), i.e. over count vectors weighted by
    D! / prod v_i! (minus the base energy), and the mean is that distribution's mean."""
    k, d = 4, 5
    units = Multinomial(k, d)
    eta = torch.randn(3, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seqs = _sequences(k, d)
    log_w = seqs @ eta.T  # (sequences, rows)
    assert torch.allclose(units.log_partition(eta), torch.logsumexp(log_w, 0))
    p = torch.softmax(log_w, 0)
    assert torch.allclose(units.mean(eta), p.T @ seqs)
    states = units.states(torch.arange(units.num_states), dtype=torch.float64)
    by_counts = torch.logsumexp(states @ eta.T - units.base_energy(states)[:, None], 0)
    assert torch.allclose(by_counts, units.log_partition(eta))
    log_prob = units.distribution(eta).log_prob(states[:, None, :])
    assert torch.allclose(torch.logsumexp(log_prob, 0), torch.zeros(3, dtype=torch.float64))
    single = torch.distributions.Multinomial(d, logits=eta[0])
    assert torch.allclose(log_prob[:, 0], single.log_prob(states))


def _tv_and_floor(p: torch.Tensor, codes: torch.Tensor, n: int):
    counts = torch.bincount(codes, minlength=p.numel())
    return total_variation(counts, p), noise_floor(p, n)


@pytest.mark.parametrize("one_long_row", [False, True])
def test_draws_follow_the_multinomial_law_at_every_length(one_long_row):
    """Rows of two lengths drawn together: each length's histogram over count vectors is within
    the largest total variation of as many exact draws (200 replicates); lengths are kept. With
    one row of 400 words among them the rows are not padded to the longest (the other search)."""
    k, n = 4, 20_000
    eta = torch.tensor([0.3, -1.0, 1.2, 0.0], dtype=torch.float64)
    lengths = torch.tensor([3] * n + [5] * n + ([400] if one_long_row else []))
    units = Multinomial(k)
    draws = units.sample(
        eta.expand(len(lengths), k).contiguous(), torch.Generator().manual_seed(1), length=lengths
    )
    assert torch.equal(draws.sum(-1), lengths.double())
    for d, rows in ((3, draws[:n]), (5, draws[n : 2 * n])):
        fixed = Multinomial(k, d)
        states = fixed.states(torch.arange(fixed.num_states), dtype=torch.float64)
        p = fixed.distribution(eta[None]).log_prob(states).exp()
        tv, floor = _tv_and_floor(p, fixed.index(rows), n)
        assert tv <= floor
    # a visibly different law is caught at this size
    other = Multinomial(k, 3).distribution((eta + torch.tensor([0.3, 0, 0, 0]))[None])
    states = Multinomial(k, 3).states(torch.arange(20), dtype=torch.float64)
    tv, floor = _tv_and_floor(other.log_prob(states).exp(), Multinomial(k, 3).index(draws[:n]), n)
    assert tv > floor


def test_a_data_length_block_keeps_each_rows_length_and_needs_one_to_be_enumerated():
    units = Multinomial(6)
    g = torch.Generator().manual_seed(0)
    x = units.random(50, g)
    assert bool((x.sum(-1) >= 1).all()) and bool((x.sum(-1) <= 6).all())
    y = units.sample(torch.randn(50, 6, generator=g), g, **units.state_keywords(x))
    assert torch.equal(y.sum(-1), x.sum(-1))
    for use in (
        lambda: units.num_states,
        lambda: units.log_partition(torch.zeros(1, 6)),
        lambda: units.states(torch.arange(2)),
    ):
        with pytest.raises(ValueError, match="at_length"):
            use()
    assert Multinomial(6, 2).state_keywords(x) == {}


def test_bad_counts_and_bad_arguments_are_refused_by_name():
    fixed, free = Multinomial(3, 4), Multinomial(3)
    with pytest.raises(ValueError, match="'v'.*non-negative integer"):
        free.validate(torch.tensor([[1.0, -1.0, 2.0]]), "v")
    with pytest.raises(ValueError, match="'v'.*non-negative integer"):
        free.validate(torch.tensor([[1.5, 0.5, 2.0]]), "v")
    with pytest.raises(ValueError, match="'v'.*length 4.*row 1 sums to 3"):
        fixed.validate(torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]), "v")
    with pytest.raises(ValueError, match="'v'.*at least one word.*row 0"):
        free.validate(torch.zeros(1, 3), "v")
    with pytest.raises(ValueError, match="'v'.*non-finite"):
        free.validate(torch.tensor([[math.nan, 1.0, 1.0]]), "v")
    for k in (1, 2.0, True):
        with pytest.raises(ValueError, match="vocabulary size"):
            Multinomial(k)
    for length in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="length"):
            Multinomial(3, length)
    assert torch.equal(free.validate(torch.tensor([[0, 2, 1]]), "v"), torch.tensor([[0, 2, 1]]))


def test_counts_distribution_with_one_total_per_row():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    totals = torch.tensor([1.0, 2.0, 7.0, 3.0], dtype=torch.float64)
    dist = MultinomialCounts(totals, logits)
    x = dist.sample((3,))
    assert x.shape == (3, 4, 5) and torch.equal(x.sum(-1), totals.expand(3, 4))
    assert torch.allclose(dist.mean, totals[:, None] * torch.softmax(logits, -1))
    log_prob = dist.log_prob(x)
    for row in range(4):
        ref = torch.distributions.Multinomial(int(totals[row]), logits=logits[row])
        assert torch.allclose(log_prob[:, row], ref.log_prob(x[:, row]))
    v = torch.tensor([[2.0, 0.0, 1.0]])
    assert float(log_multinomial_coefficient(v)) == pytest.approx(math.log(3))


def test_per_chain_lengths_draw_and_validate_row_by_row_and_refuse_counting():
    lengths = torch.tensor([1, 4, 2])
    units = Multinomial(3, lengths)
    g = torch.Generator().manual_seed(0)
    x = units.random(3, g)
    assert torch.equal(x.sum(-1), lengths.double())
    assert torch.equal(units.log_partition(torch.zeros(3, 3)), lengths * math.log(3))
    assert units.validate(x, "v") is x
    with pytest.raises(ValueError, match="row 1 sums to 2; .*|length 4; row 1"):
        units.validate(torch.tensor([[1.0, 0, 0], [1, 1, 0], [2, 0, 0]]), "v")
    with pytest.raises(ValueError, match="3 per-chain lengths got 2 rows"):
        units.sample(torch.zeros(2, 3), g)
    for use in (lambda: units.num_states, lambda: units.config()):
        with pytest.raises(ValueError, match="per-chain|one length per chain"):
            use()
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([[1, 2]]), torch.tensor([0, 2])):
        with pytest.raises(ValueError, match="per-chain"):
            Multinomial(3, bad)
