"""Log-likelihood and perplexity of documents under models whose normaliser depends on the
document's length (the replicated softmax and its deep variant).

A document of D words has log p(w) = -F(v) - log (D! / prod_k v_k!) - log Z_D for its word
sequence w with counts v: F is the free energy of the count vector (the count block's base energy
-log (D! / prod v_k!) included, so the term undoes it) and Z_D the normaliser over sequences of
length D, estimated once per length that occurs (``log_z_by_length``) on the model fixed at that
length (``ebm.documents.at_length``). The test perplexity is exp(-sum_n log p(w_n) / sum_n D_n).
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist

import torch
from torch import Tensor

from ebm.base import FactorizedBase
from ebm.counts import log_multinomial_coefficient
from ebm.documents import at_length, data_length_blocks
from ebm.graph import member_block
from ebm.inference import mean_field
from ebm.model import EnergyModel
from estimators.ais import ais
from estimators.estimate import (
    Estimate,
    flag_degenerate,
    judged_elsewhere,
    log_mean_exp,
    log_weight_diagnostics,
    log_z_parts,
)
from estimators.exact import exact_free_energy, exact_log_z
from estimators.length_path import anneal_lengths
from estimators.path import GeometricPath

__all__ = ["document_block", "log_z_by_length", "document_log_likelihood", "perplexity"]


def document_block(model: EnergyModel, block: str | None = None) -> str:
    """The count block whose length comes from the data: ``block`` when given (checked), else
    the model's only one."""
    blocks = data_length_blocks(model)
    if block is None:
        if len(blocks) != 1:
            raise ValueError(
                f"the model has {len(blocks)} count blocks whose length comes from the data "
                f"({blocks}); name the document block with block=..."
            )
        return blocks[0]
    if block not in blocks:
        raise ValueError(
            f"block {block!r} is not a count block whose length comes from the data; those are "
            f"{blocks}"
        )
    return block


def log_z_by_length(
    model: EnergyModel,
    lengths,
    block: str | None = None,
    method: str = "auto",
    max_states: int = 2**20,
    num_chains: int | None = None,
    betas=None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    batched: bool = True,
    anneal: str = "lengths",
    substeps: int | None = None,
    **ais_options,
) -> dict[int, Estimate]:
    """log Z_D for every distinct length D in ``lengths`` (ints, or a tensor of lengths, or a
    batch of count vectors whose row sums are taken), as {D: Estimate}.

    ``method="exact"`` enumerates ``ebm.documents.at_length(model, {block: D})``
    (``estimators.exact_log_z``), ``"ais"`` anneals (an estimate whose mean is below log Z_D,
    with its standard error and ESS), and ``"auto"`` enumerates a length whose model needs at
    most ``max_states`` configurations and anneals the others.

    ``anneal="lengths"`` (default) anneals over the length itself
    (``estimators.length_path.anneal_lengths``): ``num_chains`` chains (default 1,000) reach
    length 1 along the temperature path (``betas``, default 1,000), then go up the lengths with
    ``substeps`` intermediate distributions between two lengths, and their weights on reaching D
    give log Z_D: one run for every length, each length judged on its own. The chains run in
    ``groups`` (an option, default 10; None for plain AIS) independent samplers that resample
    when their weights degenerate, the error bar coming from the groups' spread. It needs the document
    block's colour class to be summable with other blocks left (both models here).

    ``anneal="temperature"`` runs the temperature path of ``estimators.ais`` (``num_chains``
    chains per length, default 100, ``betas``, ``generator`` and ``ais_options``). With
    ``batched`` (default) every length is annealed in one run: the model at one length per
    chain, the document block (and the blocks of its colour class: the over-replicated layer)
    summed out, the other blocks (the hidden units) annealed from a uniform base whose log Z_0
    does not depend on D; each length's chains give its own estimate and are judged on their own
    (degenerate weights flag that length). Otherwise, or when ``ais_options`` name a ``base``,
    ``sum_out`` or ``path``, one run per length on the default path (the document block
    annealed, the hidden ones summed out).
    """
    if method not in ("auto", "exact", "ais"):
        raise ValueError(f"method must be 'auto', 'exact' or 'ais', got {method!r}")
    if anneal not in ("lengths", "temperature"):
        raise ValueError(f"anneal must be 'lengths' or 'temperature', got {anneal!r}")
    block = document_block(model, block)
    distinct = _distinct_lengths(lengths)
    out = {}
    if method == "auto":  # the enumerable lengths exactly, the others annealed together below
        for d in distinct:
            try:
                out[d] = exact_log_z(at_length(model, {block: d}), max_states=max_states)
                out[d].extras["length"] = d
            except ValueError:  # more than max_states configurations
                pass
        method = "ais"
    rest = [d for d in distinct if d not in out]
    if method == "ais" and rest and anneal == "lengths":
        options = {k: ais_options.pop(k) for k in ("groups",) if k in ais_options}
        if ais_options:
            raise ValueError(
                f"options {sorted(ais_options)} are for anneal='temperature'; the length path "
                "takes num_chains, betas, substeps, groups, generator and progress"
            )
        found = anneal_lengths(
            model,
            block,
            rest,
            1000 if num_chains is None else num_chains,
            1000 if betas is None else betas,
            substeps,
            generator,
            progress,
            **options,
        )
        return dict(sorted({**out, **found}.items()))
    num_chains = 100 if num_chains is None else num_chains
    if method == "ais" and rest and batched and not {"base", "sum_out", "path"} & set(ais_options):
        plan = _pooled_path(model, block, rest, num_chains)
        if plan is not None:
            out.update(_pooled_ais(plan, rest, num_chains, betas, generator, progress, ais_options))
            return dict(sorted(out.items()))
    for d in rest:
        fixed = at_length(model, {block: d})
        if method == "exact":
            estimate = exact_log_z(fixed, max_states=max_states)
        else:
            estimate = ais(
                fixed, num_chains, betas, generator=generator, progress=progress, **ais_options
            )
        estimate.extras["length"] = d
        out[d] = estimate
    return dict(sorted(out.items()))


def _pooled_path(model, block, lengths, num_chains) -> GeometricPath | None:
    """The path that anneals every length at once: the model at one length per chain
    (``num_chains`` chains per length), the document block and the blocks of its colour class
    summed out, a uniform base over the others (the same log Z_0 for every length). None when
    that path does not exist (a class that cannot be summed out, a continuous block left)."""
    per_chain = torch.tensor(lengths).repeat_interleave(num_chains)
    fixed = at_length(model, {block: per_chain})
    group = next(g for g in fixed.schedule if block in [member_block(m) for m in g])
    sum_out = list(dict.fromkeys(member_block(m) for m in group))
    rest = [b for b in fixed.blocks if b not in sum_out]
    if not rest or not fixed.can_sum_out(sum_out):
        return None
    try:
        base = FactorizedBase(fixed, {b: torch.zeros(fixed.units[b].shape) for b in rest})
        return GeometricPath(fixed, base, sum_out=sum_out)
    except ValueError:
        return None


def _pooled_ais(path, lengths, num_chains, betas, generator, progress, options) -> dict:
    """One AIS run over every length (``num_chains`` chains each), split into one estimate per
    length: log Z_D = log Z_0 + log mean w over that length's chains, judged on its own."""
    with judged_elsewhere():
        pooled = ais(
            path.model,
            num_chains * len(lengths),
            betas,
            generator=generator,
            progress=progress,
            path=path,
            **options,
        )
    out = {}
    for i, d in enumerate(lengths):
        log_w = pooled.log_weights[i * num_chains : (i + 1) * num_chains]
        lme, stderr, ess = log_mean_exp(log_w)
        estimate = Estimate(
            value=path.log_z0 + lme,
            kind="point",
            method="AIS",
            stderr=stderr,
            ess=ess,
            log_weights=log_w,
            num_chains=num_chains,
            num_betas=pooled.num_betas,
            seconds=pooled.seconds,
            extras={
                "length": d,
                "log_z_base": path.log_z0 + float(path.log_z0_per_chain[i * num_chains]),
                "summed_out": path.sum_out,
                "lengths_annealed_together": len(lengths),
                "note": "E[log Z-hat] <= log Z: a stochastic lower bound",
            },
        )
        out[d] = flag_degenerate(estimate, *log_weight_diagnostics(log_w), stacklevel=4)
    return out


def _distinct_lengths(lengths) -> list[int]:
    t = torch.as_tensor(lengths)
    if t.dim() == 2:
        t = t.sum(-1)
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError("no lengths given")
    if t.is_floating_point() and not bool((t == torch.round(t)).all()):
        raise ValueError("lengths must be whole numbers of words")
    values = sorted({int(x) for x in t.tolist()})
    if values[0] < 1:
        raise ValueError(f"a document length must be >= 1, got {values[0]}")
    return values


def document_log_likelihood(
    model: EnergyModel,
    data,
    log_z: dict[int, Estimate | float],
    block: str | None = None,
    method: str = "auto",
    batch_size: int = 10_000,
) -> Estimate:
    """Mean over documents of log p(w_n), the log-probability of document n's word sequence,
    with ``log_z`` giving log Z_D for every length D that occurs (``log_z_by_length``).

    ``method``: ``"free_energy"`` sums the hidden blocks out (in closed form when they can be
    summed out together, else by enumerating some of them: small models), ``"bound"`` uses the
    mean-field bound E_q[-E] + H(q) (``MeanField.elbo``; then the value is a lower bound on the
    mean log p(w) up to log Z's error, kind ``lower_bound``), ``"auto"`` the free energy when
    the hidden blocks sum out in closed form, else the bound.

    The standard error combines the spread over documents (the test set as a sample) and the
    log Z_D errors (independent per length, each weighted by the fraction of documents of that
    length). An AIS log Z_D below the truth in expectation makes the log-likelihood an
    overestimate in expectation. ``extras``: ``per_example`` (float64), ``lengths``,
    ``words`` (sum of lengths), ``perplexity`` (exp(-sum log p / sum D), with ``perplexity_ci``
    from the standard error) and ``perplexity_per_document`` (exp(-mean_n log p_n / D_n)).
    Untrusted when any log Z_D it uses is.
    """
    start = time.perf_counter()
    if method not in ("auto", "free_energy", "bound"):
        raise ValueError(f"method must be 'auto', 'free_energy' or 'bound', got {method!r}")
    block = document_block(model, block)
    state = model.validate_data(data)
    if block not in state:
        raise ValueError(f"data must hold the document block {block!r}")
    n = state[block].shape[0]
    if n == 0:
        raise ValueError("no documents")
    hidden = [b for b in model.blocks if b not in state]
    if method == "auto":
        method = "free_energy" if model.can_sum_out(hidden) else "bound"
    lengths = state[block].sum(-1).round().to(torch.int64).cpu()
    missing = sorted({int(d) for d in lengths.tolist()} - set(log_z))
    if missing:
        raise ValueError(f"log_z has no value for the document lengths {missing[:10]}")
    parts = {d: log_z_parts(v) for d, v in log_z.items()}
    values = []
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            chunk = {b: x[lo : lo + batch_size] for b, x in state.items()}
            values.append(_unnormalised(model, chunk, block, hidden, method).double().cpu())
    lz = torch.tensor([parts[int(d)][0] for d in lengths.tolist()], dtype=torch.float64)
    per_example = torch.cat(values) - lz
    estimate = _combine(per_example, lengths, parts, method, start)
    for d in set(lengths.tolist()):
        z = log_z[int(d)]
        if isinstance(z, Estimate) and not z.trusted:
            estimate.untrusted = f"log Z_{int(d)}'s interval is not to be trusted: {z.untrusted}"
            break
    return estimate


def _unnormalised(model, chunk, block, hidden, method) -> Tensor:
    """log of the unnormalised probability of each document's word sequence."""
    words = chunk[block]
    if method == "bound":
        q = mean_field(model, chunk, blocks=hidden)
        value = q.elbo(model, chunk)
    elif model.can_sum_out(hidden):
        value = -model.free_energy(chunk)
    else:
        value = -exact_free_energy(model, chunk)
    return value.double() - log_multinomial_coefficient(words.double())


def _combine(per_example: Tensor, lengths: Tensor, parts: dict, method: str, start) -> Estimate:
    n = per_example.numel()
    se_docs = float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    counts = torch.bincount(lengths)
    se_log_z = math.sqrt(
        sum((int(counts[d]) / n) ** 2 * parts[d][1] ** 2 for d in set(lengths.tolist()))
    )
    stderr = math.sqrt(se_docs**2 + se_log_z**2)
    value = float(per_example.mean())
    words = int(lengths.sum())
    per_word, se_word = value * n / words, stderr * n / words
    z = NormalDist().inv_cdf(0.975)
    sources = sorted({p[2] for p in parts.values()})
    return Estimate(
        value=value,
        kind="lower_bound" if method == "bound" else "point",
        method=f"{'mean field' if method == 'bound' else 'free energy'}; log Z_D: "
        + "/".join(sources),
        quantity="mean log p(document)",
        stderr=stderr,
        seconds=time.perf_counter() - start,
        extras={
            "examples": n,
            "stderr_examples": se_docs,
            "stderr_log_z": se_log_z,
            "per_example": per_example,
            "lengths": lengths,
            "words": words,
            "perplexity": math.exp(-per_word),
            "perplexity_ci": (math.exp(-per_word - z * se_word), math.exp(-per_word + z * se_word)),
            "perplexity_per_document": float(torch.exp(-(per_example / lengths).mean())),
        },
    )


def perplexity(estimate: Estimate) -> tuple[float, tuple[float, float]]:
    """(exp(-sum_n log p(w_n) / sum_n D_n), its 95% interval) from a
    ``document_log_likelihood`` estimate."""
    if "perplexity" not in estimate.extras:
        raise ValueError("perplexity needs an estimate from document_log_likelihood")
    return estimate.extras["perplexity"], estimate.extras["perplexity_ci"]
