"""Document models: the Replicated Softmax and the over-replicated softmax DBM against LDA.

Trains on a corpus cut to its --vocab most frequent training words and prints the test perplexity
of each model on the same held-out documents, with what each number is:

- Replicated Softmax (``ebm.models.replicated_softmax``), CD-1 then CD-k as the paper's schedule
  raises k, the hidden bias's rate divided by the mean length as in the published update;
  log Z_D by AIS over the lengths for every test length
  (``estimators.log_z_by_length``), the document log-likelihood from the free energy
  (``estimators.document_log_likelihood``).
- Over-replicated softmax (``ebm.models.over_replicated_softmax``, M = --m words in its second
  layer), pretrained by the published rule (``samplers.ScaledCopyCD``) and trained jointly with
  mean-field PCD; log Z_D by AIS over the lengths (h2 grown to M words, then v; h1 carried,
  v and h2 summed out); the document term is the
  mean-field lower bound, so its perplexity is an upper bound up to log Z's error.
- LDA (scikit-learn's ``LatentDirichletAllocation``, batch variational Bayes), the held-out
  log p(w) of each test document by sequential importance sampling over its words
  (``estimators.lda_log_likelihood``, a stochastic lower bound).
- The unigram model of the training counts (add-one smoothed), exact.
- On the synthetic corpus, the generating model's exact perplexity (a floor in expectation).

Corpora (nothing downloaded): ``reuters`` (395 stories shipped with the ``lda`` package, 25% held
out), ``synthetic`` (``ebm.corpora.unigram_mixture``), or ``newsgroups DIR`` (the 20 Newsgroups
"bydate" bag-of-words files). Each hidden unit's top words are printed; results go to
OUT/results.json.

    python examples/documents.py --corpus reuters
    python examples/documents.py --corpus newsgroups --data /path/to/20news-bydate-matlab
    python examples/documents.py --quick                     # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import ebm
import estimators
import samplers


def load(args) -> tuple[ebm.corpora.Corpus, ebm.corpora.Corpus, ebm.corpora.Corpus | None]:
    """(train, test, the full synthetic corpus or None) cut to the --vocab most frequent words."""
    full = None
    if args.corpus == "reuters":
        train, test = ebm.corpora.split(ebm.corpora.reuters_sample(), 0.25, seed=args.seed)
    elif args.corpus == "newsgroups":
        if args.data is None:
            raise SystemExit("--corpus newsgroups needs --data DIR")
        train, test = ebm.corpora.newsgroups_bydate(args.data)
    else:
        full = ebm.corpora.unigram_mixture(
            args.documents, args.vocab, num_topics=8, mean_length=40, seed=args.seed
        )
        train, test = ebm.corpora.split(full, 0.25, seed=args.seed)
        return train, test, full
    train, test = ebm.corpora.most_frequent(train, args.vocab, test)
    return train, test, full


def _raising_k(model, train, args, gen, rule, lr_multipliers) -> None:
    """The rule with k = 1 for the first third of the epochs, 3 for the next, 5 for the last (the
    Replicated Softmax paper raises k from 1 to 5 during training)."""
    thirds = [args.epochs // 3, args.epochs // 3, args.epochs - 2 * (args.epochs // 3)]
    for k, epochs in zip((1, 3, 5), thirds, strict=True):
        if epochs:
            ebm.fit(
                model,
                {"v": train.counts},
                rule(k),
                epochs=epochs,
                batch_size=50,
                lr=args.lr,
                momentum=0.9,
                weight_decay=1e-4,
                generator=gen,
                progress=not args.quick,
                lr_multipliers=lr_multipliers,
            )


def train_rsm(train, args, gen) -> ebm.EnergyModel:
    """CD-k, k raised from 1 to 5; the hidden bias (its energy term D c . h) learns at lr / D-bar
    (D-bar the mean training length), as the published update divides its gradient by D."""
    model = ebm.models.replicated_softmax(train.counts.shape[1], args.hidden)
    mean_length = float(train.lengths.double().mean())
    _raising_k(model, train, args, gen, samplers.CD, {"factors.c.bias": 1 / mean_length})
    return model


def train_ors(train, args, gen) -> ebm.EnergyModel:
    """Pretraining as published (``samplers.ScaledCopyCD``: h2 held at (M/D) v, k raised from 1
    to 5), then joint training: the mean-field posterior started at the pretraining's up-pass for
    the data term, persistent chains for the model term. The hidden bias (energy term
    (D + M) a . h1) learns at lr / (D-bar + M)."""
    model = ebm.models.over_replicated_softmax(train.counts.shape[1], args.hidden, args.m)
    slower = {"factors.a.bias": 1 / (float(train.lengths.double().mean()) + args.m)}
    _raising_k(model, train, args, gen, samplers.ScaledCopyCD, slower)
    ebm.fit(
        model,
        {"v": train.counts},
        samplers.MeanFieldPCD(
            args.joint_chains, k=1, max_sweeps=10, init=samplers.ScaledCopyCD().initial_means
        ),
        epochs=args.joint_epochs,
        batch_size=50,
        lr=args.joint_lr,
        lr_schedule=ebm.linear_decay(args.joint_epochs) if args.joint_decay else None,
        momentum=0.9,
        weight_decay=1e-4,
        generator=gen,
        progress=not args.quick,
        lr_multipliers=slower,
    )
    return model


def evaluate(model, test, args, gen, name) -> dict:
    """log Z_D for every test length by AIS over the lengths, then the test perplexity."""
    start = time.perf_counter()
    log_z = estimators.log_z_by_length(
        model,
        test.counts,
        method="ais",
        num_chains=args.ais_chains,
        betas=args.betas,
        substeps=args.substeps,
        generator=gen,
        progress=not args.quick,
    )
    estimate = estimators.document_log_likelihood(model, {"v": test.counts}, log_z)
    ppl, (lo, hi) = estimators.perplexity(estimate)
    worst_ess = min(e.ess for e in log_z.values())
    worst_sd = max(float(e.log_weights.std()) for e in log_z.values())
    untrusted = sum(not e.trusted for e in log_z.values())
    print(f"{name}: {estimate}")
    groups = next(iter(log_z.values())).extras.get("groups")
    units = f"{args.ais_chains} chains" if groups is None else f"{groups} groups' estimates"
    print(
        f"  log Z_D: {len(log_z)} lengths, smallest ESS {worst_ess:.1f} of {units}, "
        f"largest sd(log w) {worst_sd:.2f}, {untrusted} flagged"
    )
    return {
        "perplexity": ppl,
        "ci_monte_carlo": list(_monte_carlo_interval(estimate)),
        "ci_with_test_set_spread": [lo, hi],
        "kind": estimate.kind,
        "mean_log_p": estimate.value,
        "stderr_log_z": estimate.extras["stderr_log_z"],
        "stderr_examples": estimate.extras["stderr_examples"],
        "lengths": len(log_z),
        "min_ess": worst_ess,
        "max_log_weight_sd": worst_sd,
        "lengths_flagged": untrusted,
        "trusted": estimate.trusted,
        "seconds": time.perf_counter() - start,
    }


def _monte_carlo_interval(estimate) -> tuple[float, float]:
    """95% perplexity interval from the log Z_D errors alone (the test documents held fixed)."""
    words, n = estimate.extras["words"], estimate.extras["examples"]
    per_word = estimate.value * n / words
    half = 1.96 * estimate.extras["stderr_log_z"] * n / words
    return math.exp(-per_word - half), math.exp(-per_word + half)


def lda_perplexity(train, test, args, gen) -> dict:
    """scikit-learn's LDA fitted on the training counts; the held-out log p(w) of each test
    document by sequential importance sampling over its words (``estimators.lda_log_likelihood``:
    a stochastic lower bound, so the perplexity is high in expectation)."""
    from sklearn.decomposition import LatentDirichletAllocation

    start = time.perf_counter()
    lda = LatentDirichletAllocation(
        n_components=args.hidden,
        learning_method="batch",
        max_iter=args.lda_iterations,
        random_state=args.seed,
    )
    lda.fit(train.counts.numpy())
    estimate = estimators.lda_log_likelihood(
        torch.as_tensor(lda.components_),
        lda.doc_topic_prior_,
        test.counts,
        num_particles=args.lda_particles,
        generator=gen,
    )
    ppl = estimate.extras["perplexity"]
    print(f"LDA ({args.hidden} topics): {estimate}")
    return {
        "perplexity": ppl,
        "ci_monte_carlo": list(estimate.extras["perplexity_ci"]),
        "kind": "point (sequential importance sampling; log p-hat low in expectation)",
        "min_ess": estimate.ess,
        "sklearn_perplexity": float(lda.perplexity(test.counts.numpy())),
        "seconds": time.perf_counter() - start,
    }


def unigram_perplexity(train, test) -> dict:
    """The training corpus's word frequencies (add-one smoothed): an exact baseline."""
    p = (train.counts.sum(0).double() + 1) / (train.counts.sum() + train.counts.shape[1])
    log_p = (test.counts.double() * torch.log(p)).sum()
    return {"perplexity": math.exp(-float(log_p) / float(test.counts.sum())), "kind": "exact"}


def top_words(model, vocabulary, count=8, units=5) -> list[list[str]]:
    w = model.factors["w"].weight.detach()
    return [
        [vocabulary[i] for i in torch.topk(w[:, j], count).indices.tolist()]
        for j in range(min(units, w.shape[1]))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", choices=["reuters", "synthetic", "newsgroups"], default="reuters"
    )
    parser.add_argument("--data", type=Path, help="directory of the 20 Newsgroups files")
    parser.add_argument("--vocab", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--m", type=int, default=100, help="softmax units of the second layer")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--joint-epochs", type=int, default=300)
    parser.add_argument(
        "--joint-lr",
        type=float,
        default=1e-4,
        help="mean-field PCD rate (on Reuters 3e-4 for 300 epochs and 5e-4 for 100 ended worse, "
        "and 1,000 epochs at 1e-4 diverged)",
    )
    parser.add_argument("--joint-chains", type=int, default=100, help="persistent chains")
    parser.add_argument(
        "--joint-decay", action="store_true", help="the joint rate decays linearly to 0"
    )
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--documents", type=int, default=2000, help="synthetic corpus size")
    parser.add_argument("--ais-chains", type=int, default=1000)
    parser.add_argument("--betas", type=int, default=1000, help="temperature path at length 1")
    parser.add_argument("--substeps", type=int, default=20, help="between two lengths")
    parser.add_argument("--lda-particles", type=int, default=1000)
    parser.add_argument("--lda-iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/documents"))
    parser.add_argument("--quick", action="store_true", help="tiny settings, seconds")
    args = parser.parse_args()
    if args.quick:
        args.corpus, args.vocab, args.hidden, args.m, args.documents = "synthetic", 30, 5, 5, 200
        args.epochs, args.joint_epochs, args.betas, args.ais_chains = 3, 2, 50, 20
        args.lda_iterations, args.lr, args.lda_particles = 5, 0.01, 20
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train, test, full = load(args)
    print(
        f"{args.corpus}: {len(train)} training and {len(test)} test documents, "
        f"{train.counts.shape[1]} words, mean test length {test.lengths.float().mean():.1f}"
    )
    results = {
        "corpus": args.corpus,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads",
    }
    start = time.perf_counter()
    rsm = train_rsm(train, args, gen)
    results["rsm_training_seconds"] = time.perf_counter() - start
    results["replicated_softmax"] = evaluate(rsm, test, args, gen, "Replicated Softmax")
    start = time.perf_counter()
    ors = train_ors(train, args, gen)
    results["ors_training_seconds"] = time.perf_counter() - start
    results["over_replicated_softmax"] = evaluate(ors, test, args, gen, "Over-replicated softmax")
    results["lda"] = lda_perplexity(train, test, args, gen)
    results["unigram"] = unigram_perplexity(train, test)
    if full is not None:
        truth = full.extras["log_likelihood"](test.counts).sum() / test.counts.sum()
        results["generating_model"] = {"perplexity": math.exp(-float(truth)), "kind": "exact"}
    print("\nmodel                     test perplexity   (95% interval)   what it is")
    for key, label in (
        ("replicated_softmax", "Replicated Softmax"),
        ("over_replicated_softmax", "Over-replicated softmax"),
        ("lda", "LDA"),
        ("unigram", "unigram (training counts)"),
        ("generating_model", "generating model"),
    ):
        if key in results:
            r = results[key]
            ci = r.get("ci_monte_carlo")
            interval = f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
            print(f"{label:<26}{r['perplexity']:>14.1f}{interval:>18}   {r['kind']}")
    results["top_words"] = top_words(rsm, train.vocabulary)
    for j, words in enumerate(results["top_words"]):
        print(f"hidden unit {j}: {' '.join(words)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"[intervals: 95%, Monte Carlo error only]; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
