"""The bad-input sweep: for each input a careful user can get wrong, across models, samplers,
estimators, fit, compare, load and the CLI, a clear refusal that names the problem."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

import ebm
import estimators
import samplers
from boltzkit_cli import app

S = estimators.schedules
NAN = math.nan


def rbm():
    return ebm.models.rbm(4, 3)


def data():
    return ebm.datasets.bars_and_stripes(2)  # 6 x 4


def unmarked_rbm():
    """An RBM whose graph marks no block visible: its first block, h (3 units), is taken."""
    g = ebm.Graph().add_block("h", ebm.units.Bernoulli(3)).add_block("v", ebm.units.Bernoulli(4))
    g.add_factor(ebm.factors.Dense("v", "h"))
    return ebm.EnergyModel(g)


def categorical_rbm():
    g = ebm.Graph()
    g.add_block("v", ebm.units.Categorical(2, 3), visible=True)
    g.add_block("h", ebm.units.Bernoulli(2))
    g.add_factor(ebm.factors.Dense("v", "h"))
    return ebm.EnergyModel(g)


def gibbs_run(state, sweeps=1):
    model = rbm()
    return samplers.BlockGibbs(model).run(state, sweeps)


def fit(model=None, train=None, sampler=None, **kwargs):
    return ebm.fit(
        model if model is not None else rbm(),
        train if train is not None else data(),
        sampler if sampler is not None else samplers.CD(),
        epochs=kwargs.pop("epochs", 1),
        progress=False,
        **kwargs,
    )


def ais(model=None, **kwargs):
    kwargs.setdefault("num_chains", 4)
    kwargs.setdefault("betas", S.linear(10))
    return estimators.ais(model if model is not None else rbm(), progress=False, **kwargs)


def compare(**kwargs):
    kwargs.setdefault("num_chains", 2)
    kwargs.setdefault("sweeps", 10)
    return samplers.compare(rbm(), [samplers.BlockGibbs], **kwargs)


H = torch.zeros(2, 3)

# (call, exception type, a regular expression the message must match)
CASES = {
    # models
    "rbm size 0": (lambda: ebm.models.rbm(0, 3), ValueError, "n_visible must be an int >= 1"),
    "rbm size negative": (lambda: ebm.models.rbm(4, -2), ValueError, "n_hidden must be an int"),
    "rbm size float": (lambda: ebm.models.rbm(3.0, 2), ValueError, "n_visible must be an int"),
    "rbm weight shape": (
        lambda: ebm.models.rbm(3, 2, weight=torch.zeros(2, 3)),
        ValueError,
        r"weight must have shape \(3, 2\)",
    ),
    "rbm weight nan": (
        lambda: ebm.models.rbm(3, 2, weight=torch.full((3, 2), NAN)),
        ValueError,
        "non-finite",
    ),
    "rbm bias inf": (
        lambda: ebm.models.rbm(3, 2, visible_bias=torch.tensor([0.0, math.inf, 0.0])),
        ValueError,
        "non-finite",
    ),
    "negative init_scale": (
        lambda: ebm.models.rbm(3, 2, init_scale=-1.0),
        ValueError,
        "init_scale must be a finite number >= 0",
    ),
    "nan init_scale": (
        lambda: ebm.models.dbm([3, 2], init_scale=NAN),
        ValueError,
        "init_scale must be a finite number >= 0",
    ),
    "dbm without hidden layer": (lambda: ebm.models.dbm([3]), ValueError, "at least one hidden"),
    "dbm layer 0": (lambda: ebm.models.dbm([3, 0]), ValueError, "layer 1 must be an int >= 1"),
    "gaussian rbm size 0": (lambda: ebm.models.gaussian_rbm(0, 2), ValueError, "n_visible"),
    "upoe as many experts as dimensions": (
        lambda: ebm.models.upoe(3, 3),
        ValueError,
        "fewer experts",
    ),
    "upoe negative df": (lambda: ebm.models.upoe(3, 1, df=-1.0), ValueError, "positive"),
    "fas zero scale": (lambda: ebm.models.fas(3, 2, scale=0.0), ValueError, "positive"),
    "pohmm unknown emission": (
        lambda: ebm.models.pohmm(2, 2, 3, emission="foo"),
        ValueError,
        "emission must be",
    ),
    "pohmm categorical without symbols": (
        lambda: ebm.models.pohmm(2, 2, 3, emission="categorical"),
        ValueError,
        "symbols",
    ),
    "graph unknown block": (
        lambda: (
            ebm.Graph().add_block("v", ebm.units.Bernoulli(2)).add_factor(ebm.factors.Bias("h"))
        ),
        ValueError,
        "'h'",
    ),
    "upoe_log_z of another model": (
        lambda: ebm.models.upoe_log_z(rbm()),
        ValueError,
        "ProjectedStudentT",
    ),
    "bars and stripes too large": (
        lambda: ebm.datasets.bars_and_stripes(40),
        ValueError,
        "n is at most 16",
    ),
    "ising grid couplings of the wrong shape": (
        lambda: ebm.models.checkerboard_ising(3, 3, torch.zeros(3, 3), torch.zeros(2, 3)),
        ValueError,
        r"horizontal must have shape \(3, 2\)",
    ),
    "ising grid too large for a dense coupling": (
        lambda: ebm.models.checkerboard_ising(
            300, 300, torch.zeros(300, 299), torch.zeros(299, 300)
        ),
        ValueError,
        "45,000 x 45,000 coupling matrix",
    ),
    "a precision block past 16,384 units": (
        lambda: ebm.models.mcrbm(20000, 2, 2, 2),
        ValueError,
        "20,000 x 20,000 precision",
    ),
    "a precision too large to hold": (
        lambda: samplers.BlockGibbs(ebm.models.mcrbm(2000, 2, 2, 2)).run(
            {
                "v": torch.zeros(600, 2000),
                "hc": torch.zeros(600, 2),
                "hm": torch.zeros(600, 2),
            },
            1,
        ),
        ValueError,
        "quadratic term .* exceeds",
    ),
    # samplers
    "gibbs clamps an unknown block": (
        lambda: samplers.BlockGibbs(rbm(), clamp={"zz": torch.zeros(2, 4)}),
        ValueError,
        "unknown block 'zz'",
    ),
    "gibbs zero chains": (lambda: samplers.BlockGibbs(rbm()).init(0), ValueError, "num_chains"),
    "gibbs negative sweeps": (
        lambda: gibbs_run({"v": torch.zeros(2, 4), "h": H}, -1),
        ValueError,
        "num_steps must be an int >= 0",
    ),
    "gibbs state of the wrong shape": (
        lambda: gibbs_run({"v": torch.zeros(2, 5), "h": H}),
        ValueError,
        r"expected shape \(batch, 4\)",
    ),
    "gibbs non-binary state": (
        lambda: gibbs_run({"v": torch.full((2, 4), 0.5), "h": H}),
        ValueError,
        "must be 0 or 1",
    ),
    "gibbs nan state": (
        lambda: gibbs_run({"v": torch.full((2, 4), NAN), "h": H}),
        ValueError,
        "non-finite",
    ),
    "gibbs state lacks a block": (
        lambda: gibbs_run({"v": torch.zeros(2, 4)}),
        ValueError,
        r"lacks block\(s\) \['h'\]",
    ),
    "pcd zero chains": (lambda: samplers.PCD(num_chains=0), ValueError, "num_chains"),
    "cd k 0": (lambda: samplers.CD(k=0), ValueError, "k must be an int >= 1"),
    "tempering one temperature": (
        lambda: samplers.ParallelTempering(rbm(), num_temperatures=1),
        ValueError,
        "num_temperatures",
    ),
    # estimators
    "ais one chain": (lambda: ais(num_chains=1), ValueError, "num_chains must be an int >= 2"),
    "ais schedule not from 0": (
        lambda: ais(betas=torch.tensor([0.5, 1.0])),
        ValueError,
        "start at 0 and end at 1",
    ),
    "ais schedule not to 1": (
        lambda: ais(betas=[0.0, 0.5]),
        ValueError,
        "start at 0 and end at 1",
    ),
    "ais schedule decreasing": (
        lambda: ais(betas=[0.0, 0.7, 0.3, 1.0]),
        ValueError,
        "non-decreasing",
    ),
    "ais schedule nan": (lambda: ais(betas=[0.0, NAN, 1.0]), ValueError, "finite"),
    "ais betas int too small": (lambda: ais(betas=2), ValueError, "must be >= 3"),
    "ais betas bool": (lambda: ais(betas=True), ValueError, "number of betas or a schedule"),
    "ais unknown sum_out block": (lambda: ais(sum_out=["zz"]), ValueError, "zz"),
    "bridge one chain": (
        lambda: estimators.bridge(rbm(), num_chains=1, betas=S.linear(10), progress=False),
        ValueError,
        "num_chains",
    ),
    "exact max_states 0": (
        lambda: estimators.exact_log_z(rbm(), max_states=0),
        ValueError,
        "max_states must be an int >= 1",
    ),
    "exact above the size limit": (
        lambda: estimators.exact_log_z(ebm.models.rbm(30, 30)),
        ValueError,
        "max_states",
    ),
    "elimination unknown heuristic": (
        lambda: estimators.elimination_log_z(rbm(), heuristic="x"),
        ValueError,
        "heuristic must be one of",
    ),
    "elimination of a continuous block": (
        lambda: estimators.elimination_log_z(ebm.models.gaussian_rbm(2, 2)),
        ValueError,
        "continuous",
    ),
    "log-likelihood data of the wrong shape": (
        lambda: estimators.log_likelihood(rbm(), torch.zeros(3, 5), 1.0),
        ValueError,
        r"expected data of shape \(batch, 4\)",
    ),
    "log-likelihood one example without a batch axis": (
        lambda: estimators.log_likelihood(rbm(), data()[0], 1.0),
        ValueError,
        r"got \(4,\)",
    ),
    "log-likelihood non-binary data": (
        lambda: estimators.log_likelihood(rbm(), torch.full((3, 4), 0.5), 1.0),
        ValueError,
        "must be 0 or 1",
    ),
    "log-likelihood nan data": (
        lambda: estimators.log_likelihood(rbm(), torch.full((3, 4), NAN), 1.0),
        ValueError,
        "non-finite",
    ),
    "log-likelihood complex data": (
        lambda: estimators.log_likelihood(rbm(), torch.zeros(3, 4, dtype=torch.complex64), 1.0),
        ValueError,
        "data must be real, got torch.complex64",
    ),
    "log-likelihood empty data": (
        lambda: estimators.log_likelihood(rbm(), torch.zeros(0, 4), 1.0),
        ValueError,
        "no examples",
    ),
    "log-likelihood nan log Z": (
        lambda: estimators.log_likelihood(rbm(), data(), NAN),
        ValueError,
        "log Z must be finite",
    ),
    "log-likelihood not one-hot": (
        lambda: estimators.log_likelihood(categorical_rbm(), torch.ones(3, 2, 3), 1.0),
        ValueError,
        "one-hot",
    ),
    "log-likelihood category indices instead of one-hot": (
        lambda: estimators.log_likelihood(categorical_rbm(), torch.zeros(3, 2), 1.0),
        ValueError,
        r"expected data of shape \(batch, 2, 3\)",
    ),
    "base rate of no data": (
        lambda: ebm.base_rate(rbm(), torch.zeros(0, 4)),
        ValueError,
        "no examples",
    ),
    "base rate of non-binary data": (
        lambda: ebm.base_rate(rbm(), torch.full((3, 4), 0.5)),
        ValueError,
        "must be 0 or 1",
    ),
    # fit
    "fit non-binary data": (lambda: fit(train=torch.full((6, 4), 0.5)), ValueError, "0 or 1"),
    "fit nan data": (lambda: fit(train=torch.full((6, 4), NAN)), ValueError, "non-finite"),
    "fit no data": (lambda: fit(train=torch.zeros(0, 4)), ValueError, "no training data"),
    "fit data not one-hot": (
        lambda: fit(model=categorical_rbm(), train=torch.ones(3, 2, 3)),
        ValueError,
        "one-hot",
    ),
    "fit batch size 0": (lambda: fit(batch_size=0), ValueError, "batch_size >= 1"),
    "fit negative epochs": (lambda: fit(epochs=-1), ValueError, "epochs >= 0"),
    "fit nan learning rate": (lambda: fit(lr=NAN), ValueError, "lr = nan is out of range"),
    "fit zero learning rate": (lambda: fit(lr=0.0), ValueError, "lr = 0.0 is out of range"),
    "fit negative momentum": (lambda: fit(momentum=-1.0), ValueError, "momentum = -1.0"),
    "fit negative weight decay": (lambda: fit(weight_decay=-1.0), ValueError, "weight_decay"),
    "fit a sampler class": (lambda: fit(sampler=samplers.PCD), TypeError, r"PCD\(\.\.\.\)"),
    "fit something that is no sampler": (lambda: fit(sampler=3), TypeError, "negative"),
    "fit data for a hidden block": (
        lambda: fit(train={"h": torch.zeros(6, 3)}),
        ValueError,
        r"hidden block\(s\) \['h'\]",
    ),
    "fit data for an unknown block": (
        lambda: fit(train={"zz": torch.zeros(6, 3)}),
        ValueError,
        r"unknown block\(s\) \['zz'\]",
    ),
    "fit without a visible block's data": (
        lambda: fit(model=ebm.models.crbm(2, 2, 1), train={"v": torch.zeros(6, 2)}),
        ValueError,
        r"lacks visible block\(s\) \['past'\]",
    ),
    "fit a graph with no visible block marked": (
        lambda: fit(model=unmarked_rbm(), train=torch.zeros(6, 4)),
        ValueError,
        r"first block 'h' is taken as the visible one: mark the observed blocks",
    ),
    "log-likelihood on a graph with no visible block marked": (
        lambda: estimators.log_likelihood(unmarked_rbm(), torch.zeros(6, 4), 0.0),
        ValueError,
        r"no block of this model's graph is marked visible=True",
    ),
    # compare
    "compare zero chains": (lambda: compare(num_chains=0), ValueError, "num_chains"),
    "compare burn-in 1": (lambda: compare(burn_in=1.0), ValueError, "burn_in"),
    "compare too few sweeps": (lambda: compare(sweeps=0), ValueError, "sweeps"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_refused_by_name(case):
    call, kind, message = CASES[case]
    with pytest.raises(kind, match=message):
        call()


def corrupt_copies(tmp_path):
    """A saved model and damaged copies of it: truncated, a flipped byte in the tensors, an
    empty file, a pickle, a checkpoint instead of a model."""
    good = tmp_path / "model.safetensors"
    ebm.save(rbm(), good)
    raw = good.read_bytes()
    files = {
        "truncated": raw[:-10],
        "flipped tensor byte": raw[:-1] + bytes([raw[-1] ^ 0xFF]),
        "empty": b"",
        "pickle": b"\x80\x04K\x01.",
        "zip": b"PK\x03\x04" + bytes(100),
    }
    out = {}
    for name, content in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        path.write_bytes(content)
        out[name] = path
    return out


LOAD_MESSAGES = {
    "truncated": "damaged",
    "flipped tensor byte": "do not match the digest",
    "empty": "too short",
    "pickle": "refusing to load a pickle",
    "zip": "refusing to load a pickle",
}


@pytest.mark.parametrize("damage", list(LOAD_MESSAGES))
def test_a_damaged_model_file_is_refused(tmp_path, damage):
    path = corrupt_copies(tmp_path)[damage]
    with pytest.raises(ValueError, match=LOAD_MESSAGES[damage]):
        ebm.load(path)


def test_missing_model_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        ebm.load(tmp_path / "nowhere.safetensors")
    with pytest.raises(IsADirectoryError):
        ebm.load(tmp_path)


def test_checkpoints_of_another_run_or_damaged_are_refused(tmp_path):
    """fit and ais checkpoints: another model, another number of persistent chains, another
    schedule, a model file given as a checkpoint and a truncated checkpoint are all refused."""
    train = data()
    ckpt = tmp_path / "fit.ckpt"
    fit(sampler=samplers.PCD(num_chains=4), checkpoint=ckpt)
    with pytest.raises(ValueError, match="not a training checkpoint of this model"):
        fit(model=ebm.models.rbm(4, 5), sampler=samplers.PCD(num_chains=4), checkpoint=ckpt)
    with pytest.raises(ValueError, match="holds 4 persistent chains"):
        fit(sampler=samplers.PCD(num_chains=7), epochs=2, checkpoint=ckpt)
    model_file = tmp_path / "m.safetensors"
    ebm.save(rbm(), model_file)
    with pytest.raises(ValueError, match="not a boltzkit checkpoint"):
        fit(sampler=samplers.PCD(num_chains=4), train=train, checkpoint=model_file)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(ckpt.read_bytes()[:-10])
    with pytest.raises(ValueError, match="damaged checkpoint"):
        fit(sampler=samplers.PCD(num_chains=4), epochs=2, checkpoint=damaged)
    ais_ckpt = tmp_path / "ais.ckpt"
    ais(checkpoint=ais_ckpt)
    for other in ({"model": ebm.models.rbm(4, 5)}, {"num_chains": 6}, {"betas": S.linear(30)}):
        with pytest.raises(ValueError, match="another model, base, schedule or number"):
            ais(checkpoint=ais_ckpt, **other)
    damaged.write_bytes(ais_ckpt.read_bytes()[:-10])
    with pytest.raises(ValueError, match="damaged checkpoint"):
        ais(checkpoint=damaged)


CLI_CASES = {
    "no such data": (["train", "--data", "nonsense"], "unknown data"),
    "bars and stripes of size 0": (["train", "--data", "bars-and-stripes:0"], "n must be"),
    "a file that is no model": (["estimate", "/etc/hostname", "--method", "exact"], "safetensors"),
    "mavg with exact": (
        ["estimate", "/etc/hostname", "--method", "exact", "--path", "mavg"],
        "--path mavg is for",
    ),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_refuses_a_bad_input_with_status_2(case):
    """In process (tests/test_cli.py runs the same kind of case in a subprocess)."""
    args, message = CLI_CASES[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
