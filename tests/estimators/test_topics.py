"""LDA's held-out log-likelihood by importance sampling, against the exact sum over topic
assignments on documents short enough to enumerate."""

import itertools
import math

import pytest
import torch

import estimators


def _exact_log_p(phi: torch.Tensor, alpha: torch.Tensor, words: list[int]) -> float:
    """log p(w) = log sum_z p(z) prod_i phi_{z_i w_i}, p(z) the Dirichlet-multinomial of the
    assignments' topic counts."""
    k, a0, d = phi.shape[0], float(alpha.sum()), len(words)
    terms = []
    for z in itertools.product(range(k), repeat=d):
        counts = torch.bincount(torch.tensor(z), minlength=k).double()
        log_prior = math.lgamma(a0) - math.lgamma(a0 + d)
        log_prior += float((torch.lgamma(alpha + counts) - torch.lgamma(alpha)).sum())
        terms.append(log_prior + sum(math.log(phi[t, w]) for t, w in zip(z, words, strict=True)))
    return float(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0))


def _counts(docs: list[list[int]], vocabulary: int) -> torch.Tensor:
    out = torch.zeros(len(docs), vocabulary, dtype=torch.float64)
    for n, doc in enumerate(docs):
        for w in doc:
            out[n, w] += 1
    return out


def test_importance_sampling_matches_the_exact_lda_likelihood():
    g = torch.Generator().manual_seed(0)
    topics = torch.rand(3, 6, generator=g, dtype=torch.float64) ** 3 + 0.01
    phi = topics / topics.sum(1, keepdim=True)
    alpha = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64)
    docs = [[0], [1, 4], [2, 2, 5, 0], [3, 1, 1, 5, 4, 3]]
    est = estimators.lda_log_likelihood(
        topics, alpha, _counts(docs, 6), num_particles=2000, generator=g
    )
    exact = torch.tensor([_exact_log_p(phi, alpha, d) for d in docs], dtype=torch.float64)
    assert float(exact[0]) == pytest.approx(math.log(float((alpha / alpha.sum()) @ phi[:, 0])))
    per_doc = est.extras["per_example"]
    assert bool((est.extras["ess"] > 9).all())  # of the 10 groups' estimates
    # each document within four of its own standard errors (those are small: ESS in the 1000s)
    assert abs(est.value - float(exact.mean())) < 4 * est.stderr + 1e-9
    assert float((per_doc - exact).abs().max()) < 0.05
    words = sum(len(d) for d in docs)
    assert est.extras["perplexity"] == pytest.approx(math.exp(-float(per_doc.sum()) / words))


def test_the_estimate_is_unbiased_in_p_with_resampling():
    """E[p-hat] = p(w): over 1,000 runs of tiny samplers (2 groups of 4 particles, no Gibbs
    moves, sharp topics and a small prior, so that the groups resample one or two times a run),
    the mean of p-hat / p is within four standard errors of 1 for every document."""
    g = torch.Generator().manual_seed(1)
    topics = torch.rand(3, 6, generator=g, dtype=torch.float64) ** 6 + 0.001
    phi = topics / topics.sum(1, keepdim=True)
    alpha = torch.tensor([0.1, 0.2, 0.1], dtype=torch.float64)
    docs = [[2, 2, 5, 0, 1, 3, 4], [3, 1, 1, 5, 4, 3, 0, 2]]
    exact = torch.tensor([_exact_log_p(phi, alpha, d) for d in docs], dtype=torch.float64)
    runs = torch.stack(
        [
            estimators.lda_log_likelihood(
                topics, alpha, _counts(docs, 6), num_particles=8, groups=2, moves=0, generator=g
            ).extras["per_example"]
            for _ in range(1000)
        ]
    )
    ratio = torch.exp(runs - exact)
    se = ratio.std(0) / math.sqrt(1000)
    assert bool(((ratio.mean(0) - 1).abs() < 4 * se).all())
    assert bool((se > 0).all())


def test_bad_input_is_refused_by_name():
    topics = torch.ones(2, 3)
    good = torch.tensor([[1.0, 0, 2]])
    with pytest.raises(ValueError, match="to match the topics"):
        estimators.lda_log_likelihood(topics, 0.1, torch.ones(1, 4))
    with pytest.raises(ValueError, match="whole numbers"):
        estimators.lda_log_likelihood(topics, 0.1, torch.tensor([[0.5, 0, 1]]))
    with pytest.raises(ValueError, match="at least one word"):
        estimators.lda_log_likelihood(topics, 0.1, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="alpha must be positive"):
        estimators.lda_log_likelihood(topics, 0.0, good)
    with pytest.raises(ValueError, match="non-negative"):
        estimators.lda_log_likelihood(-topics, 0.1, good)
    with pytest.raises(ValueError, match="multiple of groups"):
        estimators.lda_log_likelihood(topics, 0.1, good, num_particles=15, groups=10)
