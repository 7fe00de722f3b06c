"""Block Gibbs on unit-level graphs: sweeps per second on Ising grids and a sparse higher-order
Boltzmann machine, against a hand-written torch loop and thrml's own ``IsingEBM``, in one process.

Cases (1,000 chains): the Ising model on open 64 x 64 and 256 x 256 grids (J = 0.4 on every edge,
fields N(0, 0.1^2)) built by ``ebm.models.ising(networkx.grid_2d_graph(L, L), ...)``, and
``ebm.models.higher_order_bm(300)`` with 3,000 random triples and 1,500 random pairs. Ours:
``samplers.BlockGibbs.run`` (the backend picked for the device, kept buffers). The hand loop: a
plain torch checkerboard sweep (neighbour sums by shifted slices, the whole lattice per colour,
the other colour kept by a mask) for the grids, and per colour class gathers and
``index_add_`` for the higher-order model. thrml: idiomatic ``IsingEBM`` with its
``IsingSamplingProgram`` over the two checkerboard blocks, chains vmapped, the sweeps in one
jitted call, timed after a warm-up call of as many sweeps (compilation not timed). Model build
time is the time of ``ebm.models.ising`` (colouring included).

    python benchmarks/unit_graphs.py --json benchmarks/results/unit_graphs.json
    python benchmarks/unit_graphs.py --quick --no-thrml   # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import networkx as nx
import torch

import ebm
import samplers

COUPLING = 0.4


def _rate(step, sweeps: int, repeats: int) -> float:
    """Sweeps per second: the best of ``repeats`` timed calls of ``step`` (each ``sweeps``
    sweeps), after one untimed call."""
    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return sweeps / best


def grid_model(side: int, gen: torch.Generator) -> tuple[ebm.EnergyModel, torch.Tensor, float]:
    """The Ising model on the open side x side grid: (model, fields h (side, side), build s)."""
    field = 0.1 * torch.randn(side, side, generator=gen)
    g = nx.grid_2d_graph(side, side)
    start = time.perf_counter()
    model = ebm.models.ising(g, coupling=COUPLING, field=field.reshape(-1))
    return model, field, time.perf_counter() - start


def ours(model: ebm.EnergyModel, chains: int, sweeps: int, repeats: int) -> float:
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator().manual_seed(1))
    state = {"s": gibbs.init(chains)["s"]}

    def step():
        nonlocal state
        state = gibbs.run(state, sweeps)

    return _rate(step, sweeps, repeats)


def hand_grid(field: torch.Tensor, chains: int, sweeps: int, repeats: int) -> float:
    """A plain torch checkerboard sweep of the open grid."""
    side = field.shape[0]
    gen = torch.Generator().manual_seed(2)
    s = torch.randint(0, 2, (chains, side, side), generator=gen).float() * 2 - 1
    parity = (torch.arange(side)[:, None] + torch.arange(side)[None, :]) % 2
    masks = [parity == 0, parity == 1]

    def sweep():
        nonlocal s
        for mask in masks:
            f = torch.zeros_like(s)
            f[:, 1:] += s[:, :-1]
            f[:, :-1] += s[:, 1:]
            f[:, :, 1:] += s[:, :, :-1]
            f[:, :, :-1] += s[:, :, 1:]
            p = torch.sigmoid(2 * (COUPLING * f + field))
            new = torch.where(torch.rand(s.shape, generator=gen) < p, 1.0, -1.0)
            s = torch.where(mask, new, s)

    def step():
        for _ in range(sweeps):
            sweep()

    return _rate(step, sweeps, repeats)


def thrml_grid(field: torch.Tensor, chains: int, sweeps: int, repeats: int) -> float:
    """thrml's IsingEBM on the same grid, its two checkerboard blocks, chains vmapped."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from thrml.block_sampling import Block, SamplingSchedule, sample_states
    from thrml.models.ising import IsingEBM, IsingSamplingProgram, hinton_init
    from thrml.pgm import SpinNode

    side = field.shape[0]
    nodes = {(r, c): SpinNode() for r in range(side) for c in range(side)}
    g = nx.grid_2d_graph(side, side)
    edges = [(nodes[u], nodes[v]) for u, v in g.edges]
    order = [nodes[v] for v in g.nodes]
    model = IsingEBM(
        order,
        edges,
        jnp.asarray(field.reshape(-1).numpy()),
        jnp.full((len(edges),), COUPLING),
        jnp.array(1.0),
    )
    blocks = [
        Block([nodes[(r, c)] for r in range(side) for c in range(side) if (r + c) % 2 == k])
        for k in (0, 1)
    ]
    program = IsingSamplingProgram(model, blocks, [])
    schedule = SamplingSchedule(n_warmup=sweeps, n_samples=1, steps_per_sample=1)

    @eqx.filter_jit
    def run(key, state):
        keys = jax.random.split(key, chains)

        def chain(k, s):
            return [x[0] for x in sample_states(k, program, schedule, list(s), [], blocks)]

        return jax.vmap(chain)(keys, state)

    key = jax.random.key(0)
    state = hinton_init(key, model, blocks, (chains,))
    box = {"state": state, "key": key}

    def step():
        box["key"], sub = jax.random.split(box["key"])
        box["state"] = jax.block_until_ready(run(sub, box["state"]))

    return _rate(step, sweeps, repeats)


def higher_order_case(n: int, triples: int, pairs: int, gen: torch.Generator):
    """higher_order_bm(n) with random distinct triples and pairs: (model, build seconds)."""
    t = torch.unique(
        torch.stack([torch.randperm(n, generator=gen)[:3] for _ in range(triples)]).sort(1).values,
        dim=0,
    )
    p = torch.unique(
        torch.stack([torch.randperm(n, generator=gen)[:2] for _ in range(pairs)]).sort(1).values,
        dim=0,
    )
    start = time.perf_counter()
    model = ebm.models.higher_order_bm(
        n,
        triples=t,
        pairs=p,
        triple_weight=0.1 * torch.randn(len(t), generator=gen),
        pair_weight=0.1 * torch.randn(len(p), generator=gen),
        bias=0.1 * torch.randn(n, generator=gen),
    )
    return model, time.perf_counter() - start


def hand_higher_order(model: ebm.EnergyModel, chains: int, sweeps: int, repeats: int) -> float:
    """Per colour class of the model's schedule: each unit's natural parameter from gathers of
    the other units of its terms and ``index_add_``, a Bernoulli draw, written into the state."""
    triples = model.factors["triples"].terms0
    tw = model.factors["triples"].weight.detach()
    pairs = model.factors["pairs"].edges
    pw = model.factors["pairs"].weight.detach()
    bias = model.factors["theta"].bias.detach()
    n = bias.shape[0]
    plans = []
    for ((_, index),) in model.schedule:
        position = torch.full((n,), -1)
        position[index] = torch.arange(len(index))
        tables = []
        for terms, w in ((triples, tw), (pairs, pw)):
            slot = (position[terms] >= 0).nonzero()
            k = terms.shape[1]
            rest = torch.tensor([[c for c in range(k) if c != q] for q in range(k)])
            others = terms[slot[:, 0]].gather(1, rest[slot[:, 1]])
            target = position[terms[slot[:, 0], slot[:, 1]]]
            tables.append((others, w[slot[:, 0]], target))
        plans.append((index, bias[index], tables))
    gen = torch.Generator().manual_seed(3)
    s = torch.randint(0, 2, (chains, n), generator=gen).float()

    def step():
        for _ in range(sweeps):
            for index, b, tables in plans:
                eta = b.expand(chains, -1).clone()
                for others, w, target in tables:
                    eta.index_add_(1, target, s[:, others].prod(-1) * w)
                s[:, index] = (torch.rand(eta.shape, generator=gen) < eta.sigmoid()).float()

    return _rate(step, sweeps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="small models, few sweeps")
    parser.add_argument("--no-thrml", action="store_true", help="leave thrml out")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    chains = 50 if args.quick else 1000
    rows = []
    for side, sweeps in ((16, 5), (32, 5)) if args.quick else ((64, 40), (256, 4)):
        model, field, build = grid_model(side, gen)
        repeats = 1 if args.quick else 3
        row = {
            "model": f"Ising, {side} x {side} grid",
            "units": side * side,
            "chains": chains,
            "build_seconds": build,
            "ours": ours(model, chains, sweeps, repeats),
            "hand_loop": hand_grid(field, chains, sweeps, repeats),
        }
        if not args.no_thrml:
            row["thrml"] = thrml_grid(field, chains, sweeps, repeats)
        rows.append(row)
        print(row, flush=True)
    n, t, p = (30, 100, 50) if args.quick else (300, 3000, 1500)
    model, build = higher_order_case(n, t, p, gen)
    sweeps = 2 if args.quick else 10
    row = {
        "model": f"higher-order BM, {n} units, {t:,} triples, {p:,} pairs",
        "units": n,
        "chains": chains,
        "build_seconds": build,
        "colour_classes": len(model.schedule),
        "ours": ours(model, chains, sweeps, 1 if args.quick else 3),
        "hand_loop": hand_higher_order(model, chains, sweeps, 1 if args.quick else 3),
    }
    rows.append(row)
    print(row, flush=True)
    record = {
        "benchmark": "unit_graphs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
