"""Every script in examples/ runs in its quick mode, so none can rot."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# data the examples take as arguments: MNIST sits beside the checkout (as in CI) or is skipped
MNIST = ROOT.parent / "shared" / "data" / "mnist"
ARGS = {"mnist_rbm.py": [str(MNIST)]}


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
    assert "log Z =" in result.stdout
