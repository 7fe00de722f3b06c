"""Document models: the Replicated Softmax and the over-replicated softmax DBM against LDA.

Trains on a corpus cut to its --vocab most frequent training words and prints the test perplexity
of each model on the same held-out documents, with what each number is:

- Replicated Softmax (``ebm.models.replicated_softmax``), CD-1 then CD-k as the paper's schedule
  raises k; log Z_D by AIS for every test length (``estimators.log_z_by_length``), the
  document log-likelihood from the free energy (``estimators.document_log_likelihood``).
- Over-replicated softmax (``ebm.models.over_replicated_softmax``, M = --m words in its second
  layer), started from the trained Replicated Softmax's parameters and trained jointly with
  mean-field PCD; log Z_D by AIS (h1 annealed, v and h2 summed out); the document term is the
  mean-field lower bound, so its perplexity is an upper bound up to log Z's error.
- LDA (scikit-learn's ``LatentDirichletAllocation``, online variational Bayes), its perplexity
  from the variational bound (an upper bound on its true perplexity).
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


def train_rsm(train, args, gen) -> ebm.EnergyModel:
    """CD-k with k = 1 for the first third of the epochs, 3 for the next, 5 for the last (the
    Replicated Softmax paper raises k from 1 to 5 during training)."""
    model = ebm.models.replicated_softmax(train.counts.shape[1], args.hidden)
    thirds = [args.epochs // 3, args.epochs // 3, args.epochs - 2 * (args.epochs // 3)]
    for k, epochs in zip((1, 3, 5), thirds, strict=True):
        if epochs:
            ebm.fit(
                model,
                {"v": train.counts},
                samplers.CD(k),
                epochs=epochs,
                batch_size=50,
                lr=args.lr,
                momentum=0.9,
                weight_decay=1e-4,
                generator=gen,
                progress=not args.quick,
            )
    return model


def train_ors(rsm, train, args, gen) -> ebm.EnergyModel:
    """The over-replicated model started from the Replicated Softmax's W, b and c, then trained
    jointly: mean-field posterior for the data term, persistent chains for the model term."""
    model = ebm.models.over_replicated_softmax(train.counts.shape[1], args.hidden, args.m)
    with torch.no_grad():
        model.factors["w"].weight.copy_(rsm.factors["w"].weight)
        model.factors["b"].bias.copy_(rsm.factors["b"].bias)
        model.factors["a"].bias.copy_(rsm.factors["c"].bias)
    ebm.fit(
        model,
        {"v": train.counts},
        samplers.MeanFieldPCD(100, k=1, max_sweeps=10),
        epochs=args.joint_epochs,
        batch_size=50,
        lr=args.lr / 2,
        momentum=0.9,
        weight_decay=1e-4,
        generator=gen,
        progress=not args.quick,
    )
    return model


def evaluate(model, test, args, gen, name) -> dict:
    start = time.perf_counter()
    log_z = estimators.log_z_by_length(
        model,
        test.counts,
        method="ais",
        num_chains=args.ais_chains,
        betas=args.betas,
        generator=gen,
        progress=False,
    )
    estimate = estimators.document_log_likelihood(model, {"v": test.counts}, log_z)
    ppl, (lo, hi) = estimators.perplexity(estimate)
    worst_ess = min(e.ess for e in log_z.values())
    print(f"{name}: {estimate}")
    print(f"  log Z_D: {len(log_z)} lengths, smallest ESS {worst_ess:.1f} of {args.ais_chains}")
    return {
        "perplexity": ppl,
        "ci": [lo, hi],
        "kind": estimate.kind,
        "mean_log_p": estimate.value,
        "stderr": estimate.stderr,
        "lengths": len(log_z),
        "min_ess": worst_ess,
        "trusted": estimate.trusted,
        "seconds": time.perf_counter() - start,
    }


def lda_perplexity(train, test, args) -> dict:
    from sklearn.decomposition import LatentDirichletAllocation

    start = time.perf_counter()
    lda = LatentDirichletAllocation(
        n_components=args.hidden,
        learning_method="batch",
        max_iter=args.lda_iterations,
        random_state=args.seed,
    )
    lda.fit(train.counts.numpy())
    ppl = float(lda.perplexity(test.counts.numpy()))
    print(f"LDA ({args.hidden} topics): variational-bound perplexity {ppl:.1f}")
    return {
        "perplexity": ppl,
        "kind": "upper_bound (variational)",
        "seconds": time.perf_counter() - start,
    }


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
    parser.add_argument("--joint-epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--documents", type=int, default=2000, help="synthetic corpus size")
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--betas", type=int, default=2000)
    parser.add_argument("--lda-iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/documents"))
    parser.add_argument("--quick", action="store_true", help="tiny settings, seconds")
    args = parser.parse_args()
    if args.quick:
        args.corpus, args.vocab, args.hidden, args.m, args.documents = "synthetic", 30, 5, 5, 200
        args.epochs, args.joint_epochs, args.betas, args.ais_chains = 3, 2, 50, 20
        args.lda_iterations, args.lr = 5, 0.01
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
    ors = train_ors(rsm, train, args, gen)
    results["ors_training_seconds"] = time.perf_counter() - start
    results["over_replicated_softmax"] = evaluate(ors, test, args, gen, "Over-replicated softmax")
    results["lda"] = lda_perplexity(train, test, args)
    if full is not None:
        truth = full.extras["log_likelihood"](test.counts).sum() / test.counts.sum()
        results["generating_model"] = {"perplexity": math.exp(-float(truth)), "kind": "exact"}
    print("\nmodel                     test perplexity   what it is")
    for key, label in (
        ("replicated_softmax", "Replicated Softmax"),
        ("over_replicated_softmax", "Over-replicated softmax"),
        ("lda", "LDA"),
        ("generating_model", "generating model"),
    ):
        if key in results:
            r = results[key]
            print(f"{label:<26}{r['perplexity']:>14.1f}   {r['kind']}")
    results["top_words"] = top_words(rsm, train.vocabulary)
    for j, words in enumerate(results["top_words"]):
        print(f"hidden unit {j}: {' '.join(words)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"log Z = per-length AIS; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
