"""Block Gibbs throughput against its limit and its peers, all in one process.

For each model (a 784 x 500 Bernoulli RBM at 1,000 and 10,000 chains, a 3-layer DBM
784-500-500-1000, a factored three-way model x, y, h), sweeps per second of

- ``samplers.BlockGibbs.run`` (ours; ``--sweeps`` sweeps a call),
- matmul-only: the matrix products one sweep needs, in the same shapes, and nothing else (the
  limit): on the kernel ours runs them on (``ebm.backend``: fused oneDNN products on a float32
  CPU) and with ``torch.mm`` into kept buffers; the limit is the faster of the two,
- a plain hand-written torch loop (torch.rand, sigmoid, comparison), and the same loop through
  ``torch.compile`` (its own random numbers: inductor generates them inline, without a generator),
- a hand-written ``jax.jit`` loop (``lax.fori_loop`` over the same sweep with ``jax.random``),
- thrml running the same model exported to it (``ebm.thrml_export``), where thrml can express it,

and ours and the matmul-only limit again inside ``ebm.reduced_precision()`` (bf16 products).

Each figure is the median of ``--repeats`` timings of ``--sweeps`` sweeps after a warm-up (JAX and
thrml compile there). Ratios are to the matmul-only rate of the same run, measured alternately with
ours (the median of the paired ratios). Also: memory growth, the peak tensor memory of a ``run``
of 8 x --sweeps sweeps minus that of one of 3 x --sweeps (the profiler's count of live tensor
bytes on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU): zero when the hot loop holds
nothing more the longer it runs; and, on the CPU, how the resident set moves over the last 5 x
--sweeps sweeps of a run.

    python benchmarks/throughput.py --json benchmarks/results/throughput.json
    python benchmarks/throughput.py --quick            # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import ebm
import samplers


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_rate(step: Callable[[], object], sweeps: int, repeats: int, device="cpu") -> float:
    """Median sweeps per second of ``step`` (one sweep per call) over ``repeats`` timings."""
    step()
    _sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(sweeps):
            step()
        _sync(device)
        rates.append(sweeps / (time.perf_counter() - start))
    return statistics.median(rates)


def memory_growth(gibbs, state, sweeps: int, device) -> dict:
    """What the hot loop holds the longer it runs.

    ``peak_growth_bytes``: the peak tensor memory of one ``run`` of 8 x ``sweeps`` sweeps minus
    that of a run of 3 x ``sweeps`` (``ebm.profiling.peak_tensor_memory``: the profiler's count
    of live tensor bytes on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU); both runs make
    their buffers in their first sweep, so this is zero when the sweeps after it hold nothing
    more. On the CPU also the resident set over the last 5 x ``sweeps`` sweeps of a run of 8 x
    ``sweeps`` (``resident_change_mib``: last minus first; ``resident_range_mib``: its largest
    minus its smallest value), which also moves with what the C allocator keeps of freed
    memory: fused oneDNN products make a new output each call, and where glibc places it
    changes what stays resident."""

    def peak(n):
        return ebm.profiling.peak_tensor_memory(lambda: gibbs.run(state, n), device)

    row = {"peak_growth_bytes": peak(8 * sweeps) - peak(3 * sweeps)}
    if torch.device(device).type == "cpu":
        resident = []

        def observe(_state, sweep):
            if sweep >= 3 * sweeps - 1:
                resident.append(resident_mib())

        gibbs.run(state, 8 * sweeps, observers=[observe])
        row["resident_change_mib"] = resident[-1] - resident[0]
        row["resident_range_mib"] = max(resident) - min(resident)
    return row


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo) and the matrix extensions that decide how fast
    bf16 products run, else the platform string."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.platform()
    name = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name or platform.machine()} ({', '.join(extras) or 'no AVX-512'})"


def resident_mib() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the models and what one sweep multiplies --------------------------------------------------


def build(case: str, quick: bool) -> ebm.EnergyModel:
    torch.manual_seed(0)
    scale = 4 if quick else 1
    if case == "rbm":
        return ebm.models.rbm(784 // scale, 500 // scale, init_scale=0.05)
    if case == "dbm":
        return ebm.models.dbm([784 // scale, 500 // scale, 500 // scale, 1000 // scale], 0.05)
    if case == "three-way":
        return ebm.models.gated_rbm(256 // scale, 256 // scale, 256 // scale, 256 // scale, 0.05)
    raise ValueError(case)


def matmul_only(
    model: ebm.EnergyModel, case: str, chains: int, kernel: str = "ours"
) -> Callable[[], object]:
    """The products of one sweep with nothing else: what no block Gibbs sweep can beat.

    ``kernel="ours"``: each product as the sampler's backend computes it (``ebm.backend``: fused
    oneDNN products on a float32 CPU, which make their own outputs; elsewhere ``torch.mm`` into
    a buffer made once). ``kernel="torch.mm"``: ``torch.mm`` into buffers made
    once (``out=``), so that limit pays no allocation either: fresh outputs of a megabyte each
    cost page faults that would flatter the ratio. The benchmark's limit is the faster of the
    two."""
    dev, dt = model.device, model.dtype
    if kernel not in ("ours", "torch.mm"):
        raise ValueError(kernel)

    backend = ebm.backend.backend_for(model.device)
    fused = kernel == "ours" and getattr(backend, "fused", False)

    def mm(x, w, out):
        if fused:
            return backend.matmul(x, w)
        return torch.mm(x, w, out=out)

    def buffer(rows, cols):
        return torch.empty(rows, cols, device=dev, dtype=dt)

    if case in ("rbm", "dbm"):
        names = model.blocks
        weights = (
            [model.factors[f"w{i}"].weight.detach() for i in range(1, len(names))]
            if (case == "dbm")
            else [model.factors["dense_v_h"].weight.detach()]
        )
        states = [torch.rand(chains, model.units[b].n, device=dev, dtype=dt) for b in names]
        ups = [buffer(chains, w.shape[1]) for w in weights]
        downs = [buffer(chains, w.shape[0]) for w in weights]

        @torch.no_grad()
        def step():
            # each weight matrix is used once forwards (odd layers from even) and once backwards
            for i, w in enumerate(weights):
                mm(states[i], w, ups[i])
                mm(states[i + 1], w.T, downs[i])

        return step
    wx, wy, wh = (w.detach() for w in model.factors["factored3_way_x_y_h"].factors)
    x, y, h = (torch.rand(chains, model.units[b].n, device=dev, dtype=dt) for b in "xyh")
    fx, fy, fh, product = (buffer(chains, wx.shape[1]) for _ in range(4))
    back = {b: buffer(chains, model.units[b].n) for b in "xyh"}

    @torch.no_grad()
    def step():
        # block updates x, y, h: each block's factor activities once (after its update), and
        # one product back to each block from the other two's activities
        ax, ay, ah = mm(x, wx, fx), mm(y, wy, fy), mm(h, wh, fh)
        mm(torch.mul(ay, ah, out=product), wx.T, back["x"])
        mm(torch.mul(ax, ah, out=product), wy.T, back["y"])
        mm(torch.mul(ax, ay, out=product), wh.T, back["h"])

    return step


def torch_loop(model: ebm.EnergyModel, case: str, chains: int, gen) -> Callable[[], object]:
    """What a user writes by hand in torch: matmul, sigmoid, torch.rand, comparison, per block."""
    dev, dt = model.device, model.dtype

    def draw(a):
        return (torch.rand(a.shape, generator=gen, device=dev, dtype=dt) < torch.sigmoid(a)).to(dt)

    if case in ("rbm", "dbm"):
        names = model.blocks
        if case == "rbm":
            weights = [model.factors["dense_v_h"].weight.detach()]
        else:
            weights = [model.factors[f"w{i}"].weight.detach() for i in range(1, len(names))]
        biases = [model.factors[f"bias_{b}"].bias.detach() for b in names]
        x = [torch.rand(chains, model.units[b].n, device=dev, dtype=dt).round() for b in names]
        last = len(names) - 1

        def update(i):
            a = biases[i].expand(chains, -1).clone()
            if i > 0:
                a += x[i - 1] @ weights[i - 1]
            if i < last:
                a += x[i + 1] @ weights[i].T
            x[i] = draw(a)

        def step():
            for i in range(1, len(names), 2):
                update(i)
            for i in range(0, len(names), 2):
                update(i)

        return step
    f = model.factors["factored3_way_x_y_h"]
    wx, wy, wh = (w.detach() for w in f.factors)
    bx, by, bh = (model.factors[f"bias_{b}"].bias.detach() for b in "xyh")
    s = {b: torch.rand(chains, model.units[b].n, device=dev, dtype=dt).round() for b in "xyh"}

    def step():
        s["x"] = draw(bx + ((s["y"] @ wy) * (s["h"] @ wh)) @ wx.T)
        s["y"] = draw(by + ((s["x"] @ wx) * (s["h"] @ wh)) @ wy.T)
        s["h"] = draw(bh + ((s["x"] @ wx) * (s["y"] @ wy)) @ wh.T)

    return step


def jax_loop(model: ebm.EnergyModel, case: str, chains: int, sweeps: int):
    """A hand-written ``jax.jit`` loop: ``sweeps`` sweeps in one ``lax.fori_loop`` call."""
    import jax
    import jax.numpy as jnp

    def arr(t):
        return jnp.asarray(t.detach().cpu().float().numpy())

    key = jax.random.PRNGKey(0)

    def draw(k, a):
        return (jax.random.uniform(k, a.shape) < jax.nn.sigmoid(a)).astype(jnp.float32)

    if case in ("rbm", "dbm"):
        names = model.blocks
        if case == "rbm":
            ws = [arr(model.factors["dense_v_h"].weight)]
        else:
            ws = [arr(model.factors[f"w{i}"].weight) for i in range(1, len(names))]
        bs = [arr(model.factors[f"bias_{b}"].bias) for b in names]
        last = len(names) - 1
        x0 = [jnp.zeros((chains, model.units[b].n), jnp.float32) for b in names]

        def sweep(i, carry):
            xs, k = carry
            xs = list(xs)
            for parity in (1, 0):
                for j in range(parity, len(names), 2):
                    k, sub = jax.random.split(k)
                    a = bs[j]
                    if j > 0:
                        a = a + xs[j - 1] @ ws[j - 1]
                    if j < last:
                        a = a + xs[j + 1] @ ws[j].T
                    xs[j] = draw(sub, a)
            return tuple(xs), k

        carry0 = (tuple(x0), key)
    else:
        f = model.factors["factored3_way_x_y_h"]
        wx, wy, wh = (arr(w) for w in f.factors)
        bx, by, bh = (arr(model.factors[f"bias_{b}"].bias) for b in "xyh")
        carry0 = (tuple(jnp.zeros((chains, model.units[b].n), jnp.float32) for b in "xyh"), key)

        def sweep(i, carry):
            (x, y, h), k = carry
            k, k1, k2, k3 = jax.random.split(k, 4)
            x = draw(k1, bx + ((y @ wy) * (h @ wh)) @ wx.T)
            y = draw(k2, by + ((x @ wx) * (h @ wh)) @ wy.T)
            h = draw(k3, bh + ((x @ wx) * (y @ wy)) @ wh.T)
            return (x, y, h), k

    run = jax.jit(lambda c: jax.lax.fori_loop(0, sweeps, sweep, c))
    state = {"carry": carry0}

    def step():  # one call runs ``sweeps`` sweeps
        state["carry"] = run(state["carry"])
        jax.block_until_ready(state["carry"])

    return step


def measure(case: str, chains: int, args) -> dict:
    model = build(case, args.quick).to(args.device)
    gen = torch.Generator(device=args.device).manual_seed(0)
    gibbs = samplers.BlockGibbs(model, generator=gen)
    state = {"x": gibbs.init(chains)}

    def ours():  # ``--sweeps`` sweeps in one call, the way a sampler is run
        state["x"] = gibbs.run(state["x"], args.sweeps)

    row = {"case": case, "chains": chains, "blocks": {b: model.units[b].n for b in model.blocks}}
    limits = [matmul_only(model, case, chains, kernel) for kernel in ("ours", "torch.mm")]
    time_rate(ours, 1, 1, args.device)  # warm-up: caches, allocator, kernel compile
    for limit in limits:
        time_rate(limit, args.sweeps, 1, args.device)
    # ours and the limits alternate, one timing each per repeat, so that drifts of the machine's
    # speed (other tenants, frequency) hit all; the limit of a repeat is the faster of the two
    # kernels' matmul-only rates, and the ratio is the median of the paired ratios
    for key, context in (("", contextlib.nullcontext), ("_reduced", ebm.reduced_precision)):
        runs = []
        with context():
            for _ in range(args.repeats):
                rate = time_rate(ours, 1, 1, args.device) * args.sweeps
                runs.append([rate] + [time_rate(f, args.sweeps, 1, args.device) for f in limits])
        row["ours" + key] = statistics.median(r[0] for r in runs)
        row["matmul_only" + key] = statistics.median(max(r[1:]) for r in runs)
        row["matmul_only_torch_mm" + key] = statistics.median(r[2] for r in runs)
        row["ratio_to_matmul" + key] = statistics.median(r[0] / max(r[1:]) for r in runs)
    row.update(memory_growth(gibbs, state["x"], args.sweeps, args.device))
    # each peer alternates with ours, as the limit does: its rate and ours / its rate (medians)
    peers = {"torch_loop": (torch_loop(model, case, chains, gen), 1)}  # (step, sweeps a call)
    if not args.quick:  # inductor compiles for a minute or so per model
        compiled = torch.compile(torch_loop(model, case, chains, None), dynamic=False)
        peers["torch_compile_loop"] = (compiled, 1)
    if not args.no_jax:
        peers["jax_loop"] = (jax_loop(model, case, chains, args.sweeps), args.sweeps)
    for peer, (step, per_call) in peers.items():

        def rate(step=step, per_call=per_call):
            return time_rate(step, args.sweeps // per_call, 1, args.device) * per_call

        rate()  # compile and warm up
        pairs = [
            (time_rate(ours, 1, 1, args.device) * args.sweeps, rate()) for _ in range(args.repeats)
        ]
        row[peer] = statistics.median(p[1] for p in pairs)
        row[f"speedup_over_{peer}"] = statistics.median(p[0] / p[1] for p in pairs)
    if not args.no_thrml and case == "three-way":
        n = model.units["x"].n * model.units["y"].n * model.units["h"].n
        row["thrml"] = None
        row["thrml_note"] = (
            f"not timed: thrml has no low-rank factor, so the export expands the factored "
            f"tensor into {n:,} three-spin terms"
        )
    elif not args.no_thrml:
        try:
            from _thrml import thrml_sweeps_per_second

            row["thrml"] = thrml_sweeps_per_second(model, chains, args.thrml_sweeps)
        except (ImportError, ValueError) as err:
            row["thrml"] = None
            row["thrml_note"] = str(err).splitlines()[0]
    if row.get("thrml"):  # timed alone: thrml is too slow to alternate with
        row["speedup_over_thrml"] = row["ours"] / row["thrml"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sweeps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--no-thrml", action="store_true")
    parser.add_argument("--thrml-sweeps", type=int, default=3, help="thrml is slow: time fewer")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["rbm:1000", "rbm:10000", "dbm:1000", "three-way:1000"],
        help="model:chains pairs (models: rbm, dbm, three-way)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="small models, few sweeps")
    args = parser.parse_args()
    if args.quick:
        args.sweeps, args.repeats, args.thrml_sweeps = 3, 1, 1
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases]
    rows = []
    for case, chains in cases:
        row = measure(case, chains, args)
        rows.append(row)
        peers = ", ".join(
            f"{k} {row[k]:.1f}/s"
            for k in ("torch_loop", "torch_compile_loop", "jax_loop", "thrml")
            if row.get(k)
        )
        print(
            f"{case} x {chains} chains: ours {row['ours']:.1f} sweeps/s, matmul-only "
            f"{row['matmul_only']:.1f}/s (ratio {row['ratio_to_matmul']:.2f}); bf16 products: "
            f"ours {row['ours_reduced']:.1f}/s, ratio {row['ratio_to_matmul_reduced']:.2f}; {peers}; "
            f"peak tensor memory growth {row['peak_growth_bytes']:+,d} bytes",
            flush=True,
        )
    record = {
        "rows": rows,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": cpu_model(),
        "sweeps": args.sweeps,
        "repeats": args.repeats,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
