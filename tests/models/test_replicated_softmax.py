"""The Replicated Softmax and the over-replicated softmax DBM against sums over word sequences
written here (independent of the library's enumeration and of its count units)."""

import itertools
import math

import pytest
import torch

import ebm
import estimators
import samplers
from ebm.documents import at_length
from ebm.factors import Factor, SharedBias
from tests.helpers import noise_floor, randomize, total_variation


def _randomised(model, seed, scale=1.0):
    return randomize(model, scale, seed).double()


def _params(model, *names):
    return [
        model.factors[n].weight.detach() if n == "w" else model.factors[n].bias.detach()
        for n in names
    ]


def _binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _sequence_counts(k, d):
    """Counts of each of the k^d word sequences of length d."""
    if d == 0:
        return torch.zeros(1, k, dtype=torch.float64)
    seqs = torch.tensor(list(itertools.product(range(k), repeat=d)))
    return torch.nn.functional.one_hot(seqs, k).sum(1).double()


def _rsm_log_f(model, v):
    """log sum_h exp(-E(v, h)) over a word sequence with counts v (no multinomial factor)."""
    w, b, c = _params(model, "w", "b", "c")
    h = _binary(w.shape[1])
    d = v.sum(-1, keepdim=True)
    return torch.logsumexp(v @ b[:, None] + (v @ w) @ h.T + d * (h @ c)[None], -1)


def _rsm_log_z(model, d):
    return float(torch.logsumexp(_rsm_log_f(model, _sequence_counts(model.units["v"].k, d)), 0))


def _ors_log_z(model, d, m):
    """Sum over word sequences of v (length d), of h2 (length m) and over h1."""
    w, b, a = _params(model, "w", "b", "a")
    k = w.shape[0]
    v, h2 = _sequence_counts(k, d), _sequence_counts(k, m)
    total = (v[:, None, :] + h2[None, :, :]).reshape(-1, k)
    h1 = _binary(w.shape[1])
    log_f = total @ b[:, None] + (total @ w) @ h1.T + (d + m) * (h1 @ a)[None]
    return float(torch.logsumexp(log_f.reshape(-1), 0))


@pytest.mark.parametrize("d", [1, 2, 4])
def test_replicated_softmax_exact_log_z_is_the_sum_over_word_sequences(d):
    model = _randomised(ebm.models.replicated_softmax(4, 3), seed=d)
    exact = estimators.exact_log_z(at_length(model, {"v": d}))
    assert exact.value == pytest.approx(_rsm_log_z(model, d), abs=1e-9)


@pytest.mark.parametrize(("d", "m"), [(1, 1), (2, 2), (3, 1)])
def test_over_replicated_softmax_exact_log_z_is_the_sum_over_word_sequences(d, m):
    model = _randomised(ebm.models.over_replicated_softmax(3, 2, m), seed=10 + d)
    assert model.schedule == [["h1"], ["v", "h2"]]
    exact = estimators.exact_log_z(at_length(model, {"v": d}))
    assert exact.value == pytest.approx(_ors_log_z(model, d, m), abs=1e-9)


def test_conditionals_are_the_published_ones():
    """v | h ~ Multinomial(D, softmax(b + W h)) with each document's D; h_j | v ~
    Bernoulli(sigma(D c_j + (W^T v)_j)); h1 | v, h2 sees D + M words in the deep model."""
    model = _randomised(ebm.models.replicated_softmax(5, 3), seed=3)
    w, b, c = _params(model, "w", "b", "c")
    v = torch.tensor([[1.0, 0, 2, 0, 0], [0, 0, 0, 0, 6]], dtype=torch.float64)
    h = torch.tensor([[1.0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    ph = model.conditional("h", {"v": v}).base_dist.probs
    assert torch.allclose(ph, torch.sigmoid(v.sum(-1, keepdim=True) * c + v @ w))
    pv = model.conditional("v", {"v": v, "h": h})
    assert torch.allclose(pv.mean, v.sum(-1, keepdim=True) * torch.softmax(b + h @ w.T, -1))
    draw = model.sample_block("v", {"v": v, "h": h}, torch.Generator().manual_seed(0))
    assert torch.equal(draw.sum(-1), v.sum(-1))
    deep = _randomised(ebm.models.over_replicated_softmax(5, 3, 4), seed=4)
    w, b, a = _params(deep, "w", "b", "a")
    h2 = torch.tensor([[0.0, 4, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.float64)
    ph1 = deep.conditional("h1", {"v": v, "h2": h2}).base_dist.probs
    assert torch.allclose(ph1, torch.sigmoid((v.sum(-1, keepdim=True) + 4) * a + (v + h2) @ w))
    ph2 = deep.conditional("h2", {"v": v, "h1": h, "h2": h2})
    assert torch.allclose(ph2.mean, 4 * torch.softmax(b + h @ w.T, -1))


def test_gibbs_on_a_fixed_length_matches_the_exact_distribution():
    """Block Gibbs on the model at D = 3: the histogram of v over 20,000 chains is within the
    largest total variation of as many exact draws (200 replicates)."""
    model = _randomised(ebm.models.replicated_softmax(4, 3), seed=5).float()
    fixed = at_length(model, {"v": 3})
    units = fixed.units["v"]
    states = units.states(torch.arange(units.num_states), dtype=torch.float64)
    with torch.no_grad():
        log_p = -fixed.double().free_energy({"v": states})
    p = torch.softmax(log_p, 0)
    fixed.float()
    gibbs = samplers.BlockGibbs(fixed)
    state = gibbs.run(gibbs.init(20_000, generator=torch.Generator().manual_seed(0)), 30)
    counts = torch.bincount(units.index(state["v"]), minlength=p.numel())
    assert total_variation(counts, p) <= noise_floor(p, 20_000)


def test_contrastive_divergence_keeps_every_documents_length_and_learns():
    """CD-1 on documents of several lengths: the negative phase keeps each row's length, and
    training raises the exact mean log-likelihood of the training documents."""
    teacher = _randomised(ebm.models.replicated_softmax(5, 2), seed=6, scale=1.5).float()
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2, 3, 4] * 200)
    start = {"v": teacher.units["v"].sample(torch.zeros(600, 5), g, length=lengths)}
    docs = samplers.BlockGibbs(teacher, generator=g).run(
        {"v": start["v"], "h": torch.zeros(600, 2)}, 50
    )["v"]
    negative = samplers.CD(1).negative(teacher, {"v": docs[:50]}, g)
    assert torch.equal(negative["v"].sum(-1), docs[:50].sum(-1))
    student = ebm.models.replicated_softmax(5, 2)
    before = _mean_log_likelihood(student, docs)
    ebm.fit(
        student,
        {"v": docs},
        samplers.CD(1),
        epochs=30,
        batch_size=50,
        lr=0.05,
        generator=g,
        progress=False,
    )
    after = _mean_log_likelihood(student, docs)
    assert after > before + 0.05


def _mean_log_likelihood(model, docs):
    log_z = estimators.log_z_by_length(model, docs, method="exact", progress=False)
    return estimators.document_log_likelihood(model, {"v": docs}, log_z).value


def test_document_log_likelihood_is_the_word_sequence_probability():
    model = _randomised(ebm.models.replicated_softmax(4, 3), seed=8)
    docs = torch.tensor(
        [[1.0, 0, 2, 0], [0, 0, 0, 3], [1, 1, 1, 1], [0, 2, 0, 0]], dtype=torch.float64
    )
    log_z = estimators.log_z_by_length(model, docs, progress=False)
    assert sorted(log_z) == [2, 3, 4] and all(e.kind == "exact" for e in log_z.values())
    est = estimators.document_log_likelihood(model, {"v": docs}, log_z)
    want = torch.tensor(
        [float(_rsm_log_f(model, d[None])) - _rsm_log_z(model, int(d.sum())) for d in docs],
        dtype=torch.float64,
    )
    assert torch.allclose(est.extras["per_example"], want, atol=1e-9)
    assert est.value == pytest.approx(float(want.mean()))
    words = float(docs.sum())
    ppl, (lo, hi) = estimators.perplexity(est)
    assert ppl == pytest.approx(math.exp(-float(want.sum()) / words))
    assert lo < ppl < hi
    assert est.extras["perplexity_per_document"] == pytest.approx(
        float(torch.exp(-(want / docs.sum(-1)).mean()))
    )
    with pytest.raises(ValueError, match=r"lengths \[5\]"):
        estimators.document_log_likelihood(model, {"v": torch.tensor([[5.0, 0, 0, 0]])}, log_z)


@pytest.mark.parametrize(
    ("deep", "anneal", "batched"),
    [
        (False, "lengths", True),
        (True, "lengths", True),
        (False, "temperature", True),
        (True, "temperature", True),
        (False, "temperature", False),
    ],
)
def test_ais_log_z_by_length_is_within_its_error_of_the_exact_value(deep, anneal, batched):
    """Every length within four standard errors of its exact log Z_D: annealed over the lengths
    (one run, chains carried from length to length), annealed together in temperature (the
    hidden units from a uniform base, the count blocks summed out, one length per chain) or one
    run per length (the document annealed, the hidden units summed out)."""
    if deep:
        model = _randomised(ebm.models.over_replicated_softmax(4, 3, 2), seed=9, scale=0.7)
    else:
        model = _randomised(ebm.models.replicated_softmax(5, 3), seed=9, scale=0.7)
    model.float()
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 2, 5]
    ais = estimators.log_z_by_length(
        model,
        lengths,
        method="ais",
        num_chains=200,
        betas=500,
        generator=gen,
        progress=False,
        batched=batched,
        anneal=anneal,
    )
    exact = estimators.log_z_by_length(model, lengths, method="exact", progress=False)
    assert sorted(ais) == lengths
    for d in lengths:
        assert ais[d].trusted and ais[d].stderr > 0 and ais[d].num_chains == 200
        assert ais[d].extras["length"] == d
        assert ("lengths_annealed_together" in ais[d].extras) == (anneal != "lengths" and batched)
        assert ("substeps" in ais[d].extras) == (anneal == "lengths")
        assert abs(ais[d].value - exact[d].value) < 4 * ais[d].stderr + 1e-3


@pytest.mark.filterwarnings("ignore::estimators.estimate.DegenerateWeightsWarning")
@pytest.mark.parametrize("num_chains, groups", [(4, None), (8, 2)])
def test_the_length_path_is_unbiased_in_z_over_repeated_runs(num_chains, groups):
    """E[Z-hat_D] = Z_D: the mean of Z-hat over independent runs (few chains and steps each, so
    that one run's error is large and a bias of the moves between lengths would show) is within
    four standard errors of the exact Z_D at every length; the mean log Z-hat is not above
    log Z_D beyond its error (Jensen: E[log Z-hat] <= log Z). Plain AIS, and two groups of
    four chains resampling when their ESS falls below two (which the runs must do)."""
    model = _randomised(ebm.models.replicated_softmax(4, 3), seed=21, scale=1.0).float()
    lengths = [1, 3, 6]
    exact = estimators.log_z_by_length(model, lengths, method="exact", progress=False)
    runs = [
        estimators.log_z_by_length(
            model,
            lengths,
            method="ais",
            num_chains=num_chains,
            betas=10,
            substeps=2,
            groups=groups,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
        for seed in range(150)
    ]
    if groups is not None:
        assert sum(r[6].extras["resamplings"] > 0 for r in runs) > 30
    for d in lengths:
        values = torch.tensor([r[d].value for r in runs], dtype=torch.float64)
        ratio = torch.exp(values - exact[d].value)  # Z-hat / Z
        se = float(ratio.std() / math.sqrt(len(runs)))
        assert abs(float(ratio.mean()) - 1.0) < 4 * se
        assert float(values.mean()) <= exact[d].value + 4 * float(values.std()) / math.sqrt(150)


def test_the_length_path_refuses_what_it_cannot_do():
    model = _randomised(ebm.models.replicated_softmax(4, 3), seed=22).float()
    with pytest.raises(ValueError, match="substeps must be an int >= 1"):
        estimators.log_z_by_length(model, [30], method="ais", substeps=0, progress=False)
    with pytest.raises(ValueError, match="anneal='temperature'"):
        estimators.log_z_by_length(model, [30], method="ais", sum_out=["h"], progress=False)
    with pytest.raises(ValueError, match="anneal must be"):
        estimators.log_z_by_length(model, [30], method="ais", anneal="beta", progress=False)


def test_mean_field_bound_of_the_deep_model_lies_below_the_exact_log_likelihood():
    model = _randomised(ebm.models.over_replicated_softmax(4, 3, 2), seed=11)
    docs = torch.tensor([[1.0, 0, 2, 0], [0, 0, 0, 3], [1, 1, 1, 1]], dtype=torch.float64)
    log_z = estimators.log_z_by_length(model, docs, progress=False)
    exact = estimators.document_log_likelihood(model, {"v": docs}, log_z, method="free_energy")
    bound = estimators.document_log_likelihood(model, {"v": docs}, log_z)
    assert bound.kind == "lower_bound" and exact.kind == "point"
    gap = exact.extras["per_example"] - bound.extras["per_example"]
    assert bool((gap >= -1e-9).all()) and float(gap.max()) > 1e-4


def test_a_factor_that_claims_two_blocks_do_not_interact_is_checked():
    class Lying(SharedBias):
        def energy(self, stats):
            a, b = self.blocks
            return super().energy(stats) - (stats[a] * stats[b]).sum(-1)

    g = ebm.Graph()
    g.add_block("a", ebm.units.Bernoulli(3), visible=True)
    g.add_block("b", ebm.units.Bernoulli(3))
    with pytest.raises(ValueError, match="'a' and 'b' do not interact"):
        g.add_factor(Lying("a", "b"))
    assert Factor.interacts(Lying("a", "b"), "a", "b")


@pytest.mark.parametrize("deep", [False, True])
def test_saved_document_models_load_as_saved(tmp_path, deep):
    model = (
        ebm.models.over_replicated_softmax(6, 3, 2) if deep else ebm.models.replicated_softmax(6, 3)
    )
    _randomised(model, seed=12).float()
    path = tmp_path / "docs.safetensors"
    ebm.save(model, path)
    loaded = ebm.load(path)
    state = {b: u.random(4, torch.Generator().manual_seed(0)) for b, u in model.units.items()}
    assert torch.allclose(loaded.energy(state), model.energy(state))
    assert loaded.units["v"].length is None


def test_mean_field_pcd_trains_the_deep_model_and_its_chains_keep_their_lengths():
    """Joint training of the over-replicated model (mean field for the data term, persistent
    chains for the model term): the chains keep the lengths of the documents they started from
    and h2 keeps M words; the exact mean log-likelihood of the training documents rises."""
    teacher = _randomised(ebm.models.replicated_softmax(4, 2), seed=13, scale=1.5).float()
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2, 3] * 150)
    v = teacher.units["v"].sample(torch.zeros(300, 4), g, length=lengths)
    docs = samplers.BlockGibbs(teacher, generator=g).run({"v": v, "h": torch.zeros(300, 2)}, 50)
    docs = docs["v"]
    model = ebm.models.over_replicated_softmax(4, 2, 2)
    pcd = samplers.MeanFieldPCD(40, k=1, max_sweeps=10)
    before = _exact_mean_log_likelihood(model, docs)
    ebm.fit(model, {"v": docs}, pcd, epochs=20, batch_size=50, lr=0.05, generator=g, progress=False)
    assert sorted(set(pcd.state["v"].sum(-1).tolist())) == [2.0, 3.0]
    assert bool((pcd.state["h2"].sum(-1) == 2).all())
    assert _exact_mean_log_likelihood(model, docs) > before + 0.05


def _exact_mean_log_likelihood(model, docs):
    log_z = estimators.log_z_by_length(model, docs, method="exact", progress=False)
    est = estimators.document_log_likelihood(model, {"v": docs}, log_z, method="free_energy")
    return est.value


def test_the_sandwich_brackets_the_exact_log_likelihood_at_a_fixed_length():
    """RAISE below and AIS above the exact mean log p(v) of documents of one length, each within
    its stated error (the Replicated Softmax at D = 4; the over-replicated model's path, like a
    DBM's, does not fit RAISE)."""
    model = randomize(ebm.models.replicated_softmax(5, 3), 0.7, 3)
    fixed = at_length(model, {"v": 4})
    docs = {"v": fixed.units["v"].random(20, torch.Generator().manual_seed(0))}
    exact = estimators.log_likelihood(fixed, docs, estimators.exact_log_z(fixed)).value
    bracket = estimators.sandwich(
        fixed,
        docs,
        num_chains=100,
        reverse_chains=20,
        betas=300,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    lower, upper = bracket.extras["lower"], bracket.extras["upper"]
    assert lower.value - 3 * lower.stderr <= exact <= upper.value + 3 * upper.stderr
    assert upper.value - lower.value < 0.1


def test_base_rate_of_a_count_block_is_the_smoothed_unigram_model():
    model = ebm.models.replicated_softmax(4, 3)
    docs = torch.tensor([[1.0, 0, 2, 0], [0, 0, 0, 3], [1, 1, 1, 1]])
    base = ebm.base_rate(model, {"v": docs}, smoothing=0.5, batch_size=100)
    words = docs.sum(0).double()
    want = torch.log((words + 0.5) / (words.sum() + 4 * 0.5))
    assert torch.allclose(base.natural["v"].double(), want, atol=1e-6)
    fixed = at_length(model, {"v": 5})
    drawn = ebm.FactorizedBase(fixed, {"v": base.natural["v"]}).sample(
        4000, torch.Generator().manual_seed(0)
    )["v"]
    assert bool((drawn.sum(-1) == 5).all())
    freq = drawn.double().mean(0) / 5
    assert torch.allclose(freq, want.exp(), atol=4 * float((want.exp() / 20000).sqrt().max()))
