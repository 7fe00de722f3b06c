"""The benchmark scripts run in their quick modes (so none can rot), and the reduced-precision
context restores torch's settings and keeps AIS within its error of the exact log Z."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebm
import estimators
from tests.helpers import random_rbm

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, args",
    [
        ("throughput.py", ["--no-thrml"]),
        ("ais_speed.py", []),
        ("ais_scaling.py", ["--max-workers", "2"]),
    ],
)
def test_benchmark_runs_quick(script, args, tmp_path):
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record


def test_reduced_precision_restores_settings_and_keeps_ais_honest():
    """Inside the context float32 products round their inputs to bf16 (the results differ from
    full precision), after it they do not; AIS run inside it on a 10 x 8 RBM lands within three
    standard errors of the exact log Z (the rounding moves log Z by far less than that here)."""
    before = torch.backends.mkldnn.matmul.fp32_precision
    x = torch.randn(200, 300, generator=torch.Generator().manual_seed(1))
    w = torch.randn(300, 100, generator=torch.Generator().manual_seed(2))
    full = x @ w
    with ebm.reduced_precision():
        rounded = x @ w
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    assert torch.equal(x @ w, full)
    if not torch.equal(rounded, full):  # where oneDNN honours the setting (x86 with AVX-512)
        assert torch.allclose(rounded, full, rtol=0, atol=0.05 * float(full.abs().max()))
    model = random_rbm(10, 8, scale=1.0, seed=0)
    exact = estimators.exact_log_z(model).value
    with ebm.reduced_precision():
        est = estimators.ais(
            model, num_chains=500, progress=False, generator=torch.Generator().manual_seed(0)
        )
    assert abs(est.value - exact) < 3 * est.stderr, (est, exact)
    with pytest.raises(ValueError, match="bf16"):
        with ebm.reduced_precision(cpu="fp8"):
            pass
