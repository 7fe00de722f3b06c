import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import ebm
from boltzkit_cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "estimate", "demo"):
        assert command in result.output


def test_train_then_estimate(tmp_path):
    out = tmp_path / "m.safetensors"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            "bars-and-stripes:3",
            "--hidden",
            "4",
            "--epochs",
            "3",
            "--batch-size",
            "7",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert ebm.load(out).units["h"].n == 4
    exact = runner.invoke(
        app, ["estimate", str(out), "--data", "bars-and-stripes:3", "--method", "exact"]
    )
    assert exact.exit_code == 0, exact.output
    assert "log Z =" in exact.output and "mean log p(v) =" in exact.output
    ais = runner.invoke(
        app,
        [
            "estimate",
            str(out),
            "--data",
            "bars-and-stripes:3",
            "--method",
            "ais",
            "--betas",
            "300",
            "--chains",
            "20",
        ],
    )
    assert ais.exit_code == 0, ais.output
    assert "AIS, 20 chains x 300 betas" in ais.output and "±" in ais.output
    for method, marker in (("bridge", "BAR"), ("sandwich", "mean log p(v) in [")):
        result = runner.invoke(
            app,
            [
                "estimate",
                str(out),
                "--data",
                "bars-and-stripes:3",
                "--method",
                method,
                "--betas",
                "200",
                "--chains",
                "20",
                "--examples",
                "5",
            ],
        )
        assert result.exit_code == 0, result.output
        assert marker in result.output
    common = ["estimate", str(out), "--data", "bars-and-stripes:3", "--betas", "200"]
    mavg = runner.invoke(app, [*common, "--chains", "20", "--path", "mavg"])
    assert mavg.exit_code == 0, mavg.output
    assert "AIS, 20 chains x 200 betas" in mavg.output
    refused = runner.invoke(app, [*common, "--method", "bridge", "--path", "mavg"])
    assert refused.exit_code != 0 and "--path mavg is for" in refused.output


def run_cli(*args, code=None, cwd=None):
    """The CLI in a fresh interpreter (``python -m boltzkit_cli``, or ``code`` run before it)."""
    prelude = code or ""
    script = f"{prelude}\nimport boltzkit_cli\nboltzkit_cli.main()"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A 4x3 RBM file (bars and stripes 2x2 has 4 visible units)."""
    path = tmp_path_factory.mktemp("cli") / "small.safetensors"
    ebm.save(ebm.models.rbm(4, 3), path)
    return path


PATCH_FACTOR = """
import torch
import ebm


@ebm.factors.register
class PatchDense(ebm.factors.Factor):
    \"\"\"-v^T (W * mask) h: a dense factor restricted to patches by a fixed 0/1 mask.\"\"\"

    def __init__(self, a, b, mask, name=None):
        super().__init__(a, b, name=name)
        self.mask = torch.as_tensor(mask, dtype=torch.float32)
        self.weight = torch.nn.Parameter(0.5 * torch.ones(self.mask.shape))

    def energy(self, stats):
        w = self.weight * self.mask
        return -((stats[self.blocks[0]] @ w) * stats[self.blocks[1]]).sum(-1)
"""


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """(model file, defining file): a 4x3 RBM whose weights are a custom, registered factor
    (``PatchDense``) defined in a .py file this process imports and the CLI's does not."""
    import importlib.util

    folder = tmp_path_factory.mktemp("custom")
    source = folder / "patch_factor.py"
    source.write_text(PATCH_FACTOR)
    spec = importlib.util.spec_from_file_location("_test_patch_factor", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mask = [[1, 1, 0], [1, 1, 0], [0, 1, 1], [0, 1, 1]]
    g = ebm.Graph().add_block("v", ebm.units.Bernoulli(4), visible=True)
    g.add_block("h", ebm.units.Bernoulli(3)).add_factor(module.PatchDense("v", "h", mask))
    path = folder / "patch.safetensors"
    ebm.save(ebm.EnergyModel(g), path)
    ebm.factors.FACTOR_TYPES.pop("PatchDense")
    return path, source


def test_the_cli_loads_a_custom_factor_with_import(custom_model):
    """``--import FILE`` defines the custom factor before loading: ``estimate`` computes its
    exact log Z (equal to the one computed here) and ``compare`` runs on it."""
    path, source = custom_model
    est = run_cli(
        "estimate",
        str(path),
        "--import",
        str(source),
        "--data",
        "bars-and-stripes:2",
        "--method",
        "exact",
    )
    assert est.returncode == 0, est.stderr
    cmp = run_cli(
        "compare",
        str(path),
        "--import",
        str(source),
        "-s",
        "gibbs",
        "--sweeps",
        "2000",
        "--statistic",
        "energy",
        "--statistic",
        "h",
    )
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert "no problem found" in cmp.stdout


USER_MISTAKES = {
    "not a model file": (
        ["estimate", "/etc/hostname", "--data", "digits", "--method", "exact"],
        "not a safetensors file",
    ),
    "a pickle": (["estimate", "{pickle}", "--method", "exact"], "refusing to load a pickle"),
    "data size 0": (
        ["train", "--data", "bars-and-stripes:0", "--out", "{tmp}/m.safetensors"],
        "n must be an int >= 1",
    ),
    "data size not a number": (["train", "--data", "bars-and-stripes:x"], "whole number"),
    "unknown data": (["train", "--data", "nonsense"], "unknown data"),
    "missing MNIST folder": (["train", "--data", "mnist:{tmp}/nowhere"], "not found"),
    "model that does not fit the data": (
        ["estimate", "{model}", "--data", "digits", "--method", "exact"],
        "expected data of shape (batch, 4)",
    ),
    "output folder missing": (
        ["train", "--data", "bars-and-stripes:2", "--out", "{tmp}/no/such/m.safetensors"],
        "no such file or directory",
    ),
    "negative learning rate": (
        ["train", "--data", "bars-and-stripes:2", "--lr", "-1"],
        "--lr -1.0 is out of range",
    ),
    "compare a file that is no model": (["compare", "/etc/hostname"], "not a safetensors file"),
    "a custom factor without --import": (
        ["compare", "{custom}"],
        "defines and registers it with --import MODULE_OR_FILE",
    ),
    "import a module that does not exist": (
        ["compare", "{model}", "--import", "no_such_module_of_factors"],
        "--import no_such_module_of_factors: no module named",
    ),
    "import a file that does not exist": (
        ["estimate", "{model}", "--import", "{tmp}/nowhere.py"],
        "no such file",
    ),
    "an unknown statistic": (
        ["compare", "{model}", "--statistic", "nope", "--sweeps", "50"],
        "unknown statistic 'nope'",
    ),
}


@pytest.mark.parametrize("case", list(USER_MISTAKES))
def test_user_mistakes_print_one_line_and_exit_2(case, tmp_path, small_model, custom_model):
    """Each mistake in the user's input: exit status 2, one line on stderr naming the problem,
    no traceback, nothing on stdout but what ran before it."""
    args, message = USER_MISTAKES[case]
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    args = [
        a.format(tmp=tmp_path, model=small_model, pickle=pickle, custom=custom_model[0])
        for a in args
    ]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_a_real_crash_keeps_its_traceback(small_model):
    """An error that is not the user's (here a bug planted in the estimator) still shows its
    traceback and exits 1."""
    code = (
        "import estimators\n"
        "def broken(*a, **k):\n"
        "    raise RuntimeError('planted bug')\n"
        "estimators.exact_log_z = broken"
    )
    result = run_cli(
        "estimate", str(small_model), "--data", "bars-and-stripes:2", "--method", "exact", code=code
    )
    assert result.returncode == 1
    assert "planted bug" in result.stderr + result.stdout
    assert "Traceback" in result.stderr + result.stdout


def test_demo_quick(tmp_path):
    result = runner.invoke(
        app, ["demo", "--epochs", "2", "--betas", "300", "--chains", "20", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "AIS - exact" in result.output and "test mean log p(v)" in result.output
    assert (tmp_path / "rbm.safetensors").exists() and (tmp_path / "filters.png").exists()
