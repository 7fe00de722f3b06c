"""The benchmark scripts run in their quick modes (so none can rot), and the reduced-precision
context restores torch's settings and keeps AIS within its error of the exact log Z."""

import importlib.util
import json
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

import ebm
import estimators
from tests.helpers import random_rbm

ROOT = Path(__file__).resolve().parents[2]


def _tables_module():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_quick(script: str, out, *args: str) -> None:
    """Run ``benchmarks/<script> --quick --json out``; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "script, args",
    [
        ("throughput.py", ["--no-thrml"]),
        ("ais_speed.py", []),
        ("ais_scaling.py", ["--max-workers", "2"]),
        ("resident_set.py", []),
        ("scale_cost.py", []),
        ("unit_graphs.py", ["--no-thrml"]),
        ("documents.py", []),
    ],
)
def test_benchmark_runs_quick(script, args, tmp_path):
    out = tmp_path / script.replace(".py", ".json")
    _run_quick(script, out, *args)
    record = json.loads(out.read_text())
    # the record renders as the tables of docs/benchmarks.md do: a line per row of the record
    table = _tables_module().tables(tmp_path)[out.stem]
    assert len([line for line in table.splitlines() if line.startswith("| ")]) >= len(
        record.get("rows", [record])
    )


def test_docs_show_the_tables_of_the_committed_benchmark_records():
    """docs/benchmarks.md carries, verbatim, the tables that benchmarks/tables.py renders from the
    JSON records in benchmarks/results: the page says what the records measured."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    rendered = _tables_module().tables(ROOT / "benchmarks" / "results")
    assert set(rendered) == {
        "throughput",
        "ais_speed",
        "ais_scaling",
        "resident_set",
        "scale_cost",
        "scale_cost_h200",
        "unit_graphs",
        "documents",
    }
    for name, table in rendered.items():
        assert table in page, f"docs/benchmarks.md lacks the {name} table of its record"


def _weights_that_bf16_rounds_towards_zero(model):
    """Moves every weight of the RBM 0.45 of a bf16 step away from zero, so that rounding to
    bf16 takes each one back towards zero: the rounded model's log Z is lower by many AIS
    standard errors (log Z grows with every weight's magnitude along E[v_i h_j] here)."""
    with torch.no_grad():
        w = model.factors["dense_v_h"].weight
        rounded = w.bfloat16()
        up = torch.nextafter(rounded.abs(), torch.tensor(float("inf"), dtype=torch.bfloat16))
        r = rounded.float()
        w.copy_(torch.sign(r) * (r.abs() + 0.45 * (up.float() - r.abs())))
        assert torch.equal(w.bfloat16().float(), r)
    return r


def test_reduced_precision_restores_settings_and_keeps_ais_honest():
    """Inside the context float32 products round their inputs to bf16 (the results differ from
    full precision), after it and inside ``full_precision`` they do not. AIS run inside it on a
    20 x 18 RBM whose weights all lose magnitude to the rounding (the rounded model's log Z is
    0.039 lower, about 10 of AIS's standard errors) lands within three standard errors of the
    full-precision exact log Z: the rounded products only define AIS's intermediate
    distributions, and the last increment is evaluated at full precision. (oneDNN rounds only
    products whose inner dimension exceeds 16, hence both layers above 16 units.)"""
    setting = getattr(torch.backends.mkldnn, "matmul", None)  # torch >= 2.9
    before = None if setting is None else setting.fp32_precision
    model = random_rbm(20, 18, scale=0.5, seed=0)
    rounded_weights = _weights_that_bf16_rounds_towards_zero(model)
    w = model.factors["dense_v_h"].weight.detach()
    v = torch.rand(500, 20, generator=torch.Generator().manual_seed(1)).round()
    h = torch.rand(500, 18, generator=torch.Generator().manual_seed(2)).round()
    full = (v @ w, h @ w.T)
    with ebm.reduced_precision():
        rounded = (v @ w, h @ w.T)
        with ebm.full_precision():
            assert all(torch.equal(a, b) for a, b in zip((v @ w, h @ w.T), full, strict=True))
    assert setting is None or setting.fp32_precision == before
    assert torch.equal(v @ w, full[0])
    # where oneDNN honours the setting (x86 with AVX-512), both directions are rounded products
    honoured = all(
        torch.equal(a, b)
        for a, b in zip(rounded, (v @ rounded_weights, h @ rounded_weights.T), strict=True)
    )
    exact = estimators.exact_log_z(model).value
    rounded_model = random_rbm(20, 18, scale=0.5, seed=0)
    with torch.no_grad():
        rounded_model.factors["dense_v_h"].weight.copy_(rounded_weights)
    exact_rounded = estimators.exact_log_z(rounded_model).value
    with ebm.reduced_precision():
        est = estimators.ais(
            model, num_chains=500, progress=False, generator=torch.Generator().manual_seed(0)
        )
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)
    # the test has the power to see the rounding: the rounded model's log Z is far outside
    assert exact - exact_rounded > 8 * est.stderr, (exact, exact_rounded, est)
    if honoured:  # and AIS, though it sampled the rounded models, did not estimate their log Z
        assert abs(est.value - exact_rounded) > 6 * est.stderr, (est, exact_rounded)
    with pytest.raises(ValueError, match="bf16"):
        with ebm.reduced_precision(cpu="fp8"):
            pass


def test_glass_benchmark_runs_quick(tmp_path):
    """The strong-glass experiment of docs/results.md, in its quick mode: every run is recorded
    and, on this strong glass, flagged."""
    out = tmp_path / "glass.json"
    _run_quick("glass_ais.py", out)
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and all(r["flagged"] for r in rows)


def test_reduced_precision_without_the_cpu_setting_warns_and_keeps_float32(monkeypatch):
    """On a torch without ``torch.backends.mkldnn.matmul`` (before 2.9) the context still works:
    a warning says the CPU products stay float32, ``full_precision`` is silent, and products
    equal those outside it."""
    monkeypatch.setattr(torch.backends, "mkldnn", types.SimpleNamespace(enabled=True))
    a = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    b = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="stay at full float32"):
        with ebm.reduced_precision():
            inside = a @ b
    assert torch.equal(inside, a @ b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ebm.full_precision():
            pass
