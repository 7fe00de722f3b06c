from typer.testing import CliRunner

import ebm
from ebm.cli import app

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


def test_bad_data_spec_fails_cleanly(tmp_path):
    result = runner.invoke(app, ["train", "--data", "nonsense", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "unknown data" in result.output


def test_demo_quick(tmp_path):
    result = runner.invoke(
        app, ["demo", "--epochs", "2", "--betas", "300", "--chains", "20", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "AIS - exact" in result.output and "test mean log p(v)" in result.output
    assert (tmp_path / "rbm.safetensors").exists() and (tmp_path / "filters.png").exists()
