"""Block Gibbs and AIS on count blocks (the Replicated Softmax) against their matmul-only limit.

For a Replicated Softmax over K words with H hidden units and documents of about D words, sweeps
per second of

- ``samplers.BlockGibbs.run`` on the model whose lengths come from the data (each chain keeps
  its document's length: lengths drawn once, 1 + Poisson(D - 1)), ``--sweeps`` sweeps a call,
- one AIS temperature at a fixed length D (``estimators.path.GeometricPath`` on
  ``ebm.documents.at_length``: the weight's terms with h summed out, log f_beta, one transition
  drawing h and v),
- matmul-only: the two products of a sweep, v W (chains x K x H) and h W^T (chains x H x K),
  in the same shapes with ``torch.mm`` into buffers made once, and nothing else (the limit),
- probabilities-only: exp(eta - max) and its float64 cumulative sum over chains x K, the part
  of an exact inverse-CDF draw of a count block that grows with K (a floor no draw of this
  kind avoids), and the sweep's rate against the products and this floor together,

each the median of ``--repeats`` timings of ``--sweeps`` sweeps after a warm-up, ratios to the
matmul-only rate measured in the same process. The draw of a count block is D categorical words
per chain (inverse CDF over its cumulative probabilities, float64): work the binary blocks of the
layered models do not have, which the ratio shows.

    python benchmarks/documents.py --json benchmarks/results/documents.json
    python benchmarks/documents.py --quick            # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import ebm
import estimators
import samplers


def time_rate(step, sweeps: int, repeats: int) -> float:
    """Median sweeps per second of ``step`` (one sweep per call)."""
    step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(sweeps):
            step()
        rates.append(sweeps / (time.perf_counter() - start))
    return statistics.median(rates)


def case(vocab: int, hidden: int, length: int, chains: int, sweeps: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    model = ebm.models.replicated_softmax(vocab, hidden)
    lengths = 1 + torch.poisson(torch.full((chains,), float(length - 1)), generator=gen).long()
    v = model.units["v"].sample(torch.zeros(chains, vocab), gen, length=lengths)
    state = {"v": v, "h": torch.zeros(chains, hidden)}
    gibbs = samplers.BlockGibbs(model, generator=gen)

    def run_sweeps():  # ``sweeps`` sweeps in one call, the way a sampler is run
        state.update(gibbs.run(state, sweeps))

    ours = sweeps * time_rate(run_sweeps, 1, repeats)

    fixed = ebm.documents.at_length(model, {"v": length})
    path = estimators.path.GeometricPath(fixed)
    chain, work = {"x": path.init(chains, gen)}, {}

    def ais_step():  # one temperature: the weight's terms, log f_beta, one transition
        t = path.terms(chain["x"], work)
        path.log_f(0.5, t, work)
        chain["x"] = path.transition(chain["x"], 0.5, t, gen, work=work)

    with torch.no_grad():
        ais = time_rate(ais_step, sweeps, repeats)

    w = model.factors["w"].weight.detach()
    x, h = v.clone(), torch.zeros(chains, hidden)
    out_h, out_v = torch.empty(chains, hidden), torch.empty(chains, vocab)

    def products():
        torch.mm(x, w, out=out_h)
        torch.mm(h, w.T, out=out_v)

    limit = time_rate(products, sweeps, repeats)
    natural = torch.randn(chains, vocab, generator=gen)

    def probabilities():  # the O(chains x K) part of any exact draw: exp and a cumulative sum
        torch.exp(natural - natural.max(-1, keepdim=True).values).double().cumsum_(-1)

    floor = time_rate(probabilities, sweeps, repeats)
    both = 1 / (1 / limit + 1 / floor)
    return {
        "vocab": vocab,
        "hidden": hidden,
        "mean_length": float(lengths.float().mean()),
        "chains": chains,
        "gibbs_sweeps_per_s": ours,
        "ais_transitions_per_s": ais,
        "matmul_only_per_s": limit,
        "gibbs_ratio": ours / limit,
        "ais_ratio": ais / limit,
        "probabilities_only_per_s": floor,
        "gibbs_ratio_to_products_and_probabilities": ours / both,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = [(2000, 50, 100, 100), (2000, 50, 100, 1000), (10000, 128, 100, 1000)]
    if args.quick:
        cases, args.sweeps, args.repeats = [(50, 8, 10, 20)], 3, 2
    rows = [case(*c, args.sweeps, args.repeats) for c in cases]
    print(
        "K      H    D     chains  gibbs/s   ais/s  matmul-only/s  gibbs ratio  ais ratio"
        "  probabilities/s  ratio to both"
    )
    for r in rows:
        print(
            f"{r['vocab']:<6} {r['hidden']:<4} {r['mean_length']:<5.0f} {r['chains']:<7} "
            f"{r['gibbs_sweeps_per_s']:8.1f} {r['ais_transitions_per_s']:7.1f} "
            f"{r['matmul_only_per_s']:14.1f} {r['gibbs_ratio']:12.2f} {r['ais_ratio']:10.2f}"
            f"{r['probabilities_only_per_s']:17.1f} "
            f"{r['gibbs_ratio_to_products_and_probabilities']:14.2f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
