"""Every script in examples/ runs in its quick mode, so none can rot."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# data the examples take as arguments: MNIST sits beside the checkout (as in CI) or is skipped
MNIST = ROOT.parent / "shared" / "data" / "mnist"
ARGS = {"mnist_rbm.py": [str(MNIST)], "mnist_dbm.py": [str(MNIST)]}
# what each example prints when it worked
MARKERS = {
    "gated_shifts.py": "offset accuracy",
    "mcrbm_patches.py": "held-out log p(v)",
    "pohmm_co2.py": "held-out log p(x)",
    "documents.py": "test perplexity",
    "mnist_dbn.py": "test bound on log p(v)",
    "dbn_denoising.py": "pixels wrong",
    "ising_critical.py": "specific heat peaks at beta",
}
# the plots each example writes into its --out directory
PLOTS = {
    "pohmm_co2.py": ["pohmm.png"],
    "image_patches.py": ["filters.png"],
    "dbn_denoising.py": ["denoising.png"],
    "ising_critical.py": ["ising_critical.png"],
}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_quick(script, tmp_path):
    args = ARGS.get(script.name, [])
    if args and not Path(args[0]).exists():
        pytest.skip(f"{script.name} needs {args[0]}")
    result = subprocess.run(
        [sys.executable, str(script), *args, "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert MARKERS.get(script.name, "log Z =") in result.stdout
    for name in PLOTS.get(script.name, []):
        plot = tmp_path / name
        assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_gated_rbm_hidden_units_predict_the_shift(tmp_path):
    """The full gated-shifts example: a logistic regression on the trained gated RBM's hidden
    units names the offset of at least 90% of 2,000 held-out pairs, and the filters are saved."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gated_shifts.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(re.search(r"held-out pairs: ([\d.]+)%", result.stdout).group(1))
    assert accuracy >= 90.0, result.stdout
    assert (tmp_path / "filters.png").exists()
