"""Markdown tables of the benchmark records (the JSON files that ``run.py`` writes).

python benchmarks/tables.py benchmarks/results      # prints the tables of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PEERS = (
    ("torch_loop", "torch loop"),
    ("torch_compile_loop", "torch.compile loop"),
    ("jax_loop", "jax.jit loop"),
    ("thrml", "thrml"),
)


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _sweeps(value: float) -> str:
    """A rate with two decimals below 10, one above."""
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _mib(value, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.1f} MiB"


def _bytes(value) -> str:
    return "-" if value is None else f"{value:+,d} bytes"


def throughput_table(record: dict) -> str:
    """Sweeps per second of each case: ours, the matmul-only limit (the faster of ours's
    product kernel and torch.mm) and torch.mm's matmul-only rate, their ratio (the median of
    paired timings), the peers (each timed alternately with ours), ours over the jax.jit loop
    (the median of those pairs), the ratio to the limit with bf16 products, the growth of the
    peak tensor memory from a run of 150 sweeps to one of 400, and the range of the resident
    set over the last 250 sweeps of a run."""
    head = ["model", "chains", "ours", "matmul-only", "matmul-only, torch.mm", "ratio"]
    head += [label for _, label in PEERS]
    head += ["ours / jax.jit loop", "ours, bf16", "ratio, bf16", "peak tensor memory growth"]
    head += ["resident set, range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record["rows"]:
        shape = "-".join(str(n) for n in r["blocks"].values())
        cells = [
            f"{r['case']} {shape}",
            f"{r['chains']:,}",
            _rate(r["ours"]),
            _rate(r["matmul_only"]),
            _rate(r.get("matmul_only_torch_mm")),
            f"**{r['ratio_to_matmul']:.2f}**",
        ]
        cells += [_rate(r.get(key)) for key, _ in PEERS]
        jax = r.get("speedup_over_jax_loop")
        cells += [
            "-" if jax is None else f"**{jax:.2f}**",
            _rate(r["ours_reduced"]),
            f"{r['ratio_to_matmul_reduced']:.2f}",
            _bytes(r.get("peak_growth_bytes")),
            _mib(r.get("resident_range_mib")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ais_speed_table(record: dict) -> str:
    """AIS on the 784 x 500 RBM at float32 (on ours's product kernel, and with torch.mm where
    recorded) and with reduced-precision products."""
    chains, betas = record["chains"], record["betas"]
    lines = [
        f"| products | seconds ({chains:,} chains x {betas:,} betas) | log Z | ESS | "
        f"seconds to a standard error of {record['target_se']} nats | "
        "peak tensor memory growth | resident set growth | allocated per beta |",
        "|---|---|---|---|---|---|---|---|",
    ]
    growth = {  # measured in the float32 runs
        "float32": record.get("memory_growth_mib"),
        "float32_torch_mm": (record.get("float32_torch_mm") or {}).get("memory_growth_mib"),
    }
    peak = {
        "float32": record.get("peak_growth_bytes"),
        "float32_torch_mm": record.get("peak_growth_bytes_torch_mm"),
    }
    allocated = {
        "float32": record.get("allocations_per_beta"),
        "float32_torch_mm": record.get("allocations_per_beta_torch_mm"),
    }
    rows = (
        ("float32", "float32"),
        ("float32_torch_mm", "float32, torch.mm"),
        ("reduced", "bf16 / TF32 (reduced)"),
    )
    for key, label in rows:
        r = record.get(key)
        if r is None:
            continue
        grew = _mib(growth.get(key), "+")
        peaked = _bytes(peak.get(key))
        per_beta = "-"
        if allocated.get(key) is not None:
            a = allocated[key]
            per_beta = (
                f"{a['count']:.0f} tensors, {a['bytes']:,.0f} bytes; "
                f"{a['block_sized']:.0f} of a block's size"
            )
        lines.append(
            f"| {label} | {r['seconds']:.1f} | {r['log_z']:.4f} ± {r['stderr']:.4f} | "
            f"{r['ess']:.0f} | {record[f'seconds_for_target_se_{key}']:.0f} | {peaked} | {grew} | "
            f"{per_beta} |"
        )
    return "\n".join(lines)


def reduced_precision_table(record: dict) -> str:
    """The exact effect of bf16 rounding on the enumerable digits RBM, and AIS's estimate (empty
    for a quick record, which does not measure it)."""
    if "digits_exact" not in record:
        return ""
    d = record["digits_exact"]
    return "\n".join(
        [
            "| 64 x 16 digits RBM | log Z |",
            "|---|---|",
            f"| exact, float32 weights | {d['exact_log_z']:.4f} |",
            f"| exact, weights rounded to bf16 | {d['exact_log_z_bf16_weights']:.4f} "
            f"({d['change']:+.4f}) |",
            f"| AIS inside `ebm.reduced_precision()` | {d['ais_reduced']:.4f} ± "
            f"{d['ais_reduced_stderr']:.4f} ({d['ais_reduced_vs_exact_in_se']:+.2f} standard "
            f"errors from the exact float32 value) |",
        ]
    )


def ais_scaling_table(record: dict) -> str:
    """Wall time of one AIS run in process and sharded over Ray tasks."""
    lines = ["| run | cores | seconds | speed-up | log Z |", "|---|---|---|---|---|"]
    for r in record["rows"]:
        lines.append(
            f"| {r['run']} | {r['cores']} | {r['seconds']:.1f} | "
            f"{r['speedup_over_one_thread']:.2f} | {r['log_z']:.3f} ± {r['stderr']:.3f} |"
        )
    return "\n".join(lines)


def resident_set_table(record: dict) -> str:
    """The resident set of a long block Gibbs run under each setting of glibc's allocator: its
    band in each quarter of the sweeps after the warm-up round, and its range over them."""
    warm_up = record["sweeps_per_round"]
    quarter = (record["rounds"] - 1) * warm_up // 4
    head = ["C allocator", "sweeps per second"]
    head += [
        f"resident set, sweeps {warm_up + k * quarter:,}-{warm_up + (k + 1) * quarter:,}"
        for k in range(4)
    ]
    head += ["range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in record["settings"].items():
        env = " ".join(f"`{k}={v}`" for k, v in s["env"].items())
        cells = [f"{name}{' (' + env + ')' if env else ''}", f"{s['sweeps_per_second']:.1f}"]
        cells += [f"{lo:.1f}-{hi:.1f} MiB" for lo, hi in s["quarters_mib"]]
        cells += [f"{s['range_mib']:.1f} MiB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scale_cost_table(record: dict) -> str:
    """Cost as the model grows: per square RBM, a block Gibbs sweep against the matmul-only
    sweep, an AIS beta, the projected 14,500-beta run and AIS's peak memory and its growth."""
    head = [
        "units per layer",
        "block Gibbs sweep",
        "matmul-only sweep",
        "ratio",
        "AIS, per beta",
        "14,500 betas (projected)",
        "AIS peak tensor memory",
        "growth, 3x the betas",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record["rows"]:
        cells = [
            f"{r['units_per_layer']:,}",
            f"{1e3 * r['seconds_per_sweep']:.2f} ms",
            f"{1e3 * r['matmul_only_seconds_per_sweep']:.2f} ms",
            f"{r['ratio_to_matmul']:.2f}",
            f"{1e3 * r['ais_seconds_per_beta']:.2f} ms",
            f"{r['projected_full_run_seconds'] / 60:.1f} min",
            _mib(r["ais_peak_bytes"] / 2**20),
            _bytes(r["ais_peak_growth_bytes"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unit_graphs_table(record: dict) -> str:
    """Block Gibbs sweeps per second on unit-level graphs: ours, a hand-written torch loop and
    thrml's IsingEBM (grids), with our ratios to each and the model's build time."""
    head = [
        "model",
        "chains",
        "build",
        "ours, sweeps/s",
        "hand loop",
        "thrml IsingEBM",
        "ours / hand loop",
        "ours / thrml",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record["rows"]:
        thrml = r.get("thrml")
        cells = [
            r["model"],
            f"{r['chains']:,}",
            f"{r['build_seconds']:.2f} s",
            _sweeps(r["ours"]),
            _sweeps(r["hand_loop"]),
            "-" if thrml is None else _sweeps(thrml),
            f"{r['ours'] / r['hand_loop']:.2f}",
            "-" if thrml is None else f"{r['ours'] / thrml:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def documents_table(record: dict) -> str:
    """Block Gibbs and AIS temperatures per second on Replicated Softmax models, with their
    matmul-only limit and the ratios, and the probabilities-only floor of the count draw (with
    the sweep's ratio to products and probabilities together) where the record has it."""
    floor = all("probabilities_only_per_s" in r for r in record["rows"])
    extra_head, extra_rule = (
        (" probabilities-only | Gibbs against both |", "---|---|") if floor else ("", "")
    )
    lines = [
        f"Machine: {record['machine']}.",
        "",
        "| K | H | mean length | chains | block Gibbs | AIS temperature | matmul-only | Gibbs ratio "
        "| AIS ratio |" + extra_head,
        "|---|---|---|---|---|---|---|---|---|" + extra_rule,
    ]
    for r in record["rows"]:
        line = (
            f"| {r['vocab']:,} | {r['hidden']} | {r['mean_length']:.0f} | {r['chains']:,} "
            f"| {_sweeps(r['gibbs_sweeps_per_s'])} | {_sweeps(r['ais_transitions_per_s'])} "
            f"| {_sweeps(r['matmul_only_per_s'])} | **{r['gibbs_ratio']:.2f}** "
            f"| **{r['ais_ratio']:.2f}** |"
        )
        if floor:
            line += (
                f" {_sweeps(r['probabilities_only_per_s'])} "
                f"| {r['gibbs_ratio_to_products_and_probabilities']:.2f} |"
            )
        lines.append(line)
    return "\n".join(lines)


def tables(results: Path) -> dict[str, str]:
    """The tables of every record present in ``results``, by record name."""
    renderers = {
        "throughput": [throughput_table],
        "ais_speed": [ais_speed_table, reduced_precision_table],
        "ais_scaling": [ais_scaling_table],
        "resident_set": [resident_set_table],
        "scale_cost": [scale_cost_table],
        "scale_cost_h200": [scale_cost_table],
        "unit_graphs": [unit_graphs_table],
        "documents": [documents_table],
    }
    out = {}
    for name, render in renderers.items():
        path = results / f"{name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            out[name] = "\n\n".join(t for f in render if (t := f(record)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=Path("benchmarks/results"))
    args = parser.parse_args()
    for name, table in tables(args.results).items():
        print(f"## {name}\n\n{table}\n")


if __name__ == "__main__":
    main()
