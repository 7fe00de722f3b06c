"""Held-out log-likelihood of documents under LDA, the baseline of the document models.

Latent Dirichlet allocation with K topics phi_k (distributions over the vocabulary) and a
symmetric or vector Dirichlet prior alpha gives a document's word sequence w (counts v) the
probability

    p(w | alpha, phi) = integral Dir(theta; alpha) prod_w (sum_k theta_k phi_kw)^v_w d theta,

which has no closed form. ``lda_log_likelihood`` estimates it by sequential importance sampling
over the document's words with collapsed Gibbs moves (the left-to-right evaluation of Wallach et
al. 2009 as an annealed importance sampler, without resampling), so that E[p-hat] = p(w): log
p-hat is a stochastic lower bound, the counterpart of an AIS estimate of a Boltzmann machine's
log p (AIS's log Z-hat is low, so its log p-hat is high in expectation).
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from estimators.estimate import Estimate, log_mean_exp
from estimators.resampling import check_groups, resample_degenerate_groups

__all__ = ["lda_log_likelihood"]


def lda_log_likelihood(
    topics: Tensor,
    alpha,
    counts: Tensor,
    num_particles: int = 100,
    moves: int = 5,
    groups: int = 10,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Mean over documents of log p(w_n | alpha, phi) under LDA, by sequential importance
    sampling over the words (annealing over the document's length).

    ``topics``: (K, vocabulary) non-negative topic-word weights (rows normalised here; e.g.
    scikit-learn's ``LatentDirichletAllocation.components_``), ``alpha``: the Dirichlet prior
    on a document's topic proportions (a float or K values), ``counts``: (documents,
    vocabulary) word counts. The words of a document are exchangeable under LDA, so its
    sequence probability does not depend on the order they are taken in.

    Each of ``num_particles`` particles holds topic assignments z_1..z_i of the first i words,
    theta integrated out. Word i + 1 multiplies the particle's weight by its predictive
    probability p(w_(i+1) | z_1..z_i) = sum_k (n_k + alpha_k) / (i + alpha_0) phi_k,w(i+1)
    (n_k the particle's count of topic k), draws z_(i+1) from its conditional, then ``moves``
    collapsed Gibbs updates of assignments at random positions among the first i + 1 leave
    p(z_1..z_(i+1) | w_1..w_(i+1)) invariant. The weight's expectation is p(w) exactly (an
    annealed importance sampler whose intermediate distributions are the posteriors of the
    document's prefixes).

    The particles run in ``groups`` independent groups, each a sequential Monte Carlo sampler:
    when a group's weights degenerate (ESS below half its particles) after a word's
    reweighting, the group resamples (multinomially, by weight) before the word's topic is drawn,
    its running estimate taking the factor mean(w) and its weights reset. Each group's product
    Z-hat_r is an unbiased estimate of p(w) (Del Moral, Doucet & Jasra 2006), so log p-hat(w) =
    log mean_r Z-hat_r satisfies E[log p-hat] <= log p(w): a stochastic lower bound, like AIS's
    log Z-hat (which makes a Boltzmann machine's log p-hat high instead); its error is the
    delta-method one over the independent groups.

    ``stderr`` combines the per-document errors (the Monte Carlo error); the spread over
    documents is in ``extras['stderr_examples']``; ``extras`` also has ``per_example``,
    ``ess`` (per document, of the groups' Z-hat, out of ``groups``), ``lengths``, ``words``,
    ``perplexity`` = exp(-sum_n log p-hat_n / sum_n D_n) with ``perplexity_ci`` (from the Monte
    Carlo error) and ``perplexity_per_document``.
    """
    start = time.perf_counter()
    phi = _topic_distributions(topics)
    v = _check_counts(counts, phi.shape[1])
    k = phi.shape[0]
    alpha = torch.as_tensor(alpha, dtype=torch.float64).expand(k).clone()
    if not bool((alpha > 0).all()):
        raise ValueError("alpha must be positive")
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 2:
        raise ValueError(f"num_particles must be an int >= 2, got {num_particles!r}")
    if isinstance(moves, bool) or not isinstance(moves, int) or moves < 0:
        raise ValueError(f"moves must be an int >= 0, got {moves!r}")
    check_groups(groups, num_particles, "num_particles")
    words, present = _word_sequences(v)
    log_z = _sequential_weights(
        phi, alpha, words, present, (groups, num_particles // groups), moves, generator
    )
    parts = [log_mean_exp(row) for row in log_z]
    log_p = torch.tensor([p[0] for p in parts], dtype=torch.float64)
    return _summary(log_p, [p[1] for p in parts], [p[2] for p in parts], v, num_particles, start)


def _word_sequences(v: Tensor) -> tuple[Tensor, Tensor]:
    """(documents, longest) word indices, padded, and the mask of real words."""
    lengths = v.sum(1).to(torch.int64)
    longest = int(lengths.max())
    words = torch.zeros(v.shape[0], longest, dtype=torch.int64)
    for n in range(v.shape[0]):
        words[n, : int(lengths[n])] = torch.repeat_interleave(
            torch.arange(v.shape[1]), v[n].to(torch.int64)
        )
    present = torch.arange(longest)[None, :] < lengths[:, None]
    return words, present


def _sequential_weights(phi, alpha, words, present, shape, moves, generator) -> Tensor:
    """log Z-hat (documents, groups) of the groups' samplers, all documents at once (longest
    first, so that the documents still taking words at step i are a prefix)."""
    groups, size = shape
    order = torch.argsort(present.sum(1), descending=True, stable=True)
    words, lengths = words[order], present.sum(1)[order]
    n_docs, longest = words.shape
    k = phi.shape[0]
    z = torch.zeros(n_docs, groups * size, longest, dtype=torch.int64)
    counts = torch.zeros(n_docs, groups * size, k, dtype=torch.float64)
    log_w = torch.zeros(n_docs, groups, size, dtype=torch.float64)
    log_z = torch.zeros(n_docs, groups, dtype=torch.float64)
    emission = phi.T  # (vocabulary, K)
    for i in range(longest):
        n = int((lengths > i).sum())  # the documents with a word i
        like = emission[words[:n, i]][:, None, :]  # (n, 1, K)
        predictive = ((counts[:n] + alpha) * like).sum(-1) / (i + float(alpha.sum()))
        log_w[:n] += torch.log(predictive).view(n, groups, size)
        _resample(z[:n], counts[:n], log_w[:n], log_z[:n], i, generator)
        new = _categorical((counts[:n] + alpha) * like, generator)
        z[:n, :, i] = new
        _add_topic(counts[:n], new, torch.ones(new.shape, dtype=torch.float64))
        for _ in range(moves):
            _gibbs_update(z[:n], counts[:n], words[:n], emission, alpha, i, generator)
    log_z += torch.logsumexp(log_w, -1) - math.log(size)
    out = torch.empty_like(log_z)
    out[order] = log_z
    return out


def _resample(z, counts, log_w, log_z, i, generator) -> None:
    """Resample, in place, the groups whose ESS fell below half their particles
    (``estimators.resampling.resample_degenerate_groups``), their particles' assignments and
    topic counts with them."""
    index = resample_degenerate_groups(log_w, log_z, generator)
    if index is None:
        return
    n = z.shape[0]
    z[:, :, :i] = torch.gather(z[:, :, :i], 1, index[..., None].expand(n, -1, i))
    counts.copy_(torch.gather(counts, 1, index[..., None].expand(n, -1, counts.shape[-1])))


def _gibbs_update(z, counts, words, emission, alpha, i, generator) -> None:
    """Collapsed Gibbs update of one assignment per document, at a position drawn uniformly
    among the first i + 1 (in place on views of the documents that have a word i)."""
    n_docs = z.shape[0]
    position = torch.randint(i + 1, (n_docs,), generator=generator)
    rows = torch.arange(n_docs)
    old = z[rows, :, position]  # (docs, particles)
    ones = torch.ones(old.shape, dtype=torch.float64)
    _add_topic(counts, old, -ones)
    like = emission[words[rows, position]][:, None, :]
    new = _categorical((counts + alpha) * like, generator)
    z[rows, :, position] = new
    _add_topic(counts, new, ones)


def _add_topic(counts: Tensor, topic: Tensor, amount: Tensor) -> None:
    """counts[d, p, topic[d, p]] += amount[d, p], in place."""
    counts.scatter_add_(-1, topic[..., None], amount[..., None])


def _categorical(weights: Tensor, generator) -> Tensor:
    """One draw per row of the last axis, proportional to the non-negative ``weights``."""
    cdf = weights.cumsum(-1)
    u = torch.rand(cdf.shape[:-1], generator=generator, dtype=cdf.dtype) * cdf[..., -1]
    return (
        torch.searchsorted(cdf, u[..., None], right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
    )


def _topic_distributions(topics: Tensor) -> Tensor:
    phi = torch.as_tensor(topics, dtype=torch.float64)
    if phi.dim() != 2 or phi.shape[0] < 1:
        raise ValueError(f"topics must be (topics, vocabulary), got shape {tuple(phi.shape)}")
    if not bool(torch.isfinite(phi).all()) or bool((phi < 0).any()):
        raise ValueError("topics must be finite and non-negative")
    total = phi.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("every topic needs positive weight somewhere")
    return phi / total


def _check_counts(counts: Tensor, vocabulary: int) -> Tensor:
    v = torch.as_tensor(counts, dtype=torch.float64)
    if v.dim() != 2 or v.shape[1] != vocabulary:
        raise ValueError(
            f"counts must be (documents, {vocabulary}) to match the topics, got {tuple(v.shape)}"
        )
    if v.shape[0] == 0:
        raise ValueError("no documents")
    if bool((v < 0).any()) or not bool((v == torch.round(v)).all()):
        raise ValueError("counts must be non-negative whole numbers")
    if bool((v.sum(1) < 1).any()):
        raise ValueError("every document needs at least one word")
    return v


def _summary(log_p: Tensor, se: list, ess: list, v: Tensor, particles: int, start) -> Estimate:
    n = log_p.numel()
    lengths = v.sum(1).round().to(torch.int64)
    words = int(lengths.sum())
    value = float(log_p.mean())
    stderr = math.sqrt(sum(s * s for s in se)) / n
    se_docs = float(log_p.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    per_word, se_word = value * n / words, stderr * n / words
    return Estimate(
        value=value,
        kind="point",
        method="sequential importance sampling over words (collapsed Gibbs moves)",
        quantity="mean log p(document)",
        stderr=stderr,
        ess=min(ess),
        num_chains=particles,
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "stderr_examples": se_docs,
            "per_example": log_p,
            "ess": torch.tensor(ess),
            "lengths": lengths,
            "words": words,
            "perplexity": math.exp(-per_word),
            "perplexity_ci": (
                math.exp(-per_word - 1.96 * se_word),
                math.exp(-per_word + 1.96 * se_word),
            ),
            "perplexity_per_document": float(torch.exp(-(log_p / lengths).mean())),
            "note": "E[log p-hat] <= log p: a stochastic lower bound per document",
        },
    )
