"""Deep belief nets against brute-force enumeration written here: the variational bound and its
importance-weighted refinement, ancestral samples, the generative classifier, training."""

import itertools
import math

import pytest
import torch

import ebm
import estimators
import samplers
from ebm.dbn import DBN, pretrain_dbn, up_down
from tests.helpers import noise_floor, total_variation


def _binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _randomize(dbn, scale, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dbn.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return dbn


def _bernoulli_log_prob(logits, x):
    return (x * logits - torch.nn.functional.softplus(logits)).sum(-1)


@torch.no_grad()
def _top_log_joint(dbn, x, y=None):
    """log p*_top(x[, y]) = log sum_h exp(-E(x, y, h)), h enumerated (not summed in closed form)."""
    top = dbn.top.factors
    w, b, c = top["w"].weight, top["bias_x"].bias, top["bias_h"].bias
    hs = _binary(c.numel())
    e = (x @ b)[:, None] + x @ w @ hs.T + (hs @ c)[None, :]
    if y is not None:
        u, d = top["u"].weight, top["bias_y"].bias.reshape(-1)
        e = e + (y @ d)[:, None] + y @ u @ hs.T
    return torch.logsumexp(e, 1)


@torch.no_grad()
def _top_log_z(dbn):
    xs = _binary(dbn.sizes[-2])
    if dbn.labels is None:
        return float(torch.logsumexp(_top_log_joint(dbn, xs), 0))
    terms = [
        _top_log_joint(dbn, xs, torch.eye(dbn.labels, dtype=torch.float64)[[k] * len(xs)])
        for k in range(dbn.labels)
    ]
    return float(torch.logsumexp(torch.cat(terms), 0))


@torch.no_grad()
def _exact(dbn, v, y=None):
    """(log p(v[, y]), the variational bound B(v[, y]), the relative sd of the importance weight
    w = p(v, h) / q(h | v) under q) per example, every hidden layer below the top enumerated."""
    log_z = _top_log_z(dbn)
    hidden = [_binary(n) for n in dbn.sizes[1:-1]]
    log_p, bound, spread = [], [], []
    for i in range(v.shape[0]):
        joint, q_terms = [], []
        for hs in itertools.product(*[range(len(h)) for h in hidden]):
            layers = [v[i : i + 1]] + [hidden[k][j : j + 1] for k, j in enumerate(hs)]
            if y is not None:
                lp = _top_log_joint(dbn, layers[-1], y[i : i + 1]) - log_z
            elif dbn.labels is not None:  # the labels summed over
                eye = torch.eye(dbn.labels, dtype=torch.float64)
                each = [_top_log_joint(dbn, layers[-1], eye[k : k + 1]) for k in range(dbn.labels)]
                lp = torch.logsumexp(torch.stack(each), 0) - log_z
            else:
                lp = _top_log_joint(dbn, layers[-1]) - log_z
            lq = torch.zeros(1, dtype=torch.float64)
            for level in range(1, len(layers)):
                gen, rec = dbn.generative[level - 1], dbn.recognition[level - 1]
                lp = lp + _bernoulli_log_prob(
                    layers[level] @ gen.weight.T + gen.bias, layers[level - 1]
                )
                lq = lq + _bernoulli_log_prob(
                    layers[level - 1] @ rec.weight + rec.bias, layers[level]
                )
            joint.append(lp)
            q_terms.append(lq)
        joint, lq = torch.cat(joint), torch.cat(q_terms)
        log_p.append(torch.logsumexp(joint, 0))
        bound.append((lq.exp() * (joint - lq)).sum())
        # E_q[w^2] / p^2 - 1, with E_q[w^2] = sum_h p(v, h)^2 / q(h | v)
        spread.append((torch.logsumexp(2 * joint - lq, 0) - 2 * log_p[-1]).exp().sub(1).sqrt())
    return torch.stack(log_p), torch.stack(bound), torch.stack(spread)


@pytest.mark.parametrize("layers", [[5, 3, 4], [4, 3, 3, 3]])
def test_bound_and_importance_weighted_estimate_against_enumeration(layers):
    """The bound's estimate is within 4 standard errors of the enumerated bound; the enumerated
    bound is below log p(v) for every example; the importance-weighted estimate is above the
    bound and, example by example, within 5 of its delta-method standard errors of log p(v)
    (sd(w) / (p(v) sqrt(S)), computed exactly from the enumeration)."""
    dbn = _randomize(DBN(layers).double(), 1.0, 0)
    v = _binary(layers[0])
    log_p, bound, spread = _exact(dbn, v)
    assert bool((bound <= log_p + 1e-12).all())
    assert float((log_p - bound).mean()) > 0.01  # a real gap: q is not the posterior
    est = estimators.dbn_log_likelihood(
        dbn, v, _top_log_z(dbn), samples=4000, generator=torch.Generator().manual_seed(0)
    )
    assert est.kind == "lower_bound"
    assert abs(est.value - float(bound.mean())) < 4 * est.stderr, (est.value, bound.mean())
    iw = est.extras["importance_weighted_per_example"]
    assert bool(((iw - log_p).abs() < 5 * spread / math.sqrt(4000)).all())
    assert est.extras["importance_weighted"] > est.value


def test_bound_on_images_and_labels_and_the_top_free_energy():
    dbn = _randomize(DBN([4, 3, 3], labels=3).double(), 1.0, 1)
    v = _binary(4)
    labels = torch.arange(16) % 3
    y = torch.eye(3, dtype=torch.float64)[labels]
    log_p, bound, _ = _exact(dbn, v, y)
    est = estimators.dbn_log_likelihood(
        dbn,
        v,
        _top_log_z(dbn),
        samples=3000,
        labels=labels,
        generator=torch.Generator().manual_seed(1),
    )
    assert abs(est.value - float(bound.mean())) < 4 * est.stderr
    # without labels: the bound on log p(v), the labels summed out of the top RBM
    log_p_v, bound_v, _ = _exact(dbn, v)
    assert torch.allclose(log_p_v.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    est_v = estimators.dbn_log_likelihood(
        dbn, v, _top_log_z(dbn), samples=3000, generator=torch.Generator().manual_seed(2)
    )
    assert abs(est_v.value - float(bound_v.mean())) < 4 * est_v.stderr
    assert est_v.value > est.value  # log p(v) >= log p(v, y)
    x = _binary(3)
    with torch.no_grad():
        summed = dbn.top_free_energy(x)
        by_label = dbn.label_free_energies(x)
    brute = torch.stack(
        [_top_log_joint(dbn, x, torch.eye(3, dtype=torch.float64)[[k] * 8]) for k in range(3)], 1
    )
    assert torch.allclose(-by_label, brute, atol=1e-10)
    assert torch.allclose(-summed, torch.logsumexp(brute, 1), atol=1e-10)
    assert estimators.exact_log_z(dbn.top).value == pytest.approx(_top_log_z(dbn), abs=1e-9)


def test_ancestral_samples_follow_the_model():
    """Visible draws of ``DBN.sample`` (long top-level chains, then the top-down pass) against
    the enumerated p(v): within the total variation of exact draws of the same size."""
    dbn = _randomize(DBN([4, 3, 3]).double(), 1.0, 2)
    v = _binary(4)
    log_p, _, _ = _exact(dbn, v)
    p = log_p.exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-10)
    n = 20_000
    g = torch.Generator().manual_seed(3)
    probs = dbn.sample(n, sweeps=100, generator=g)
    draws = (torch.rand(probs.shape, generator=g, dtype=torch.float64) < probs).long()
    codes = (draws * (2 ** torch.arange(3, -1, -1))).sum(1)  # itertools order: first unit high
    counts = torch.bincount(codes, minlength=16)
    assert total_variation(counts, p) <= noise_floor(p, n, replicates=100)


def test_classifier_is_the_lowest_free_energy_label():
    dbn = _randomize(DBN([5, 4, 3], labels=4).double(), 1.0, 4)
    v = _binary(5)
    log_post = dbn.classify(v)
    x = torch.sigmoid(v @ dbn.recognition[0].weight + dbn.recognition[0].bias)
    brute = torch.stack(
        [_top_log_joint(dbn, x, torch.eye(4, dtype=torch.float64)[[k] * 32]) for k in range(4)], 1
    )
    assert torch.allclose(log_post, torch.log_softmax(brute, 1), atol=1e-10)


def test_pretraining_copies_each_rbm_and_up_down_raises_the_likelihood():
    """Bars and stripes (3x3): after greedy pretraining the generative and recognition weights
    are each RBM's; up-down fine-tuning then raises the exact mean log p(v) of the data."""
    data = ebm.datasets.bars_and_stripes(3).double()
    torch.manual_seed(0)
    dbn = DBN([9, 6, 6]).double()
    histories = pretrain_dbn(
        dbn,
        data.repeat(10, 1),
        lambda: samplers.CD(1),
        epochs=[60, 60],
        batch_size=14,
        lr=0.1,
        momentum=0.5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert len(histories) == 2
    assert torch.equal(dbn.generative[0].weight, dbn.recognition[0].weight)
    before = float(_exact(dbn, data)[0].mean())
    history = up_down(
        dbn,
        data.repeat(10, 1),
        epochs=100,
        batch_size=14,
        lr=0.02,
        top_sweeps=5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert len(history) == 100 and not torch.equal(
        dbn.generative[0].weight, dbn.recognition[0].weight
    )
    after = float(_exact(dbn, data)[0].mean())
    assert after > before + 0.1, (before, after)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one hidden layer"):
        DBN([4])
    with pytest.raises(ValueError, match="layer 1"):
        DBN([4, 0, 3])
    with pytest.raises(ValueError, match="labels must be an int >= 2"):
        DBN([4, 3], labels=1)
    dbn = DBN([4, 3, 3])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        dbn.check_data(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="binary"):
        dbn.check_data(torch.full((2, 4), 2.0))
    with pytest.raises(ValueError, match="no label block"):
        estimators.dbn_log_likelihood(dbn, torch.zeros(2, 4), 0.0, labels=torch.tensor([0, 1]))
    labelled = DBN([4, 3, 3], labels=2)
    with pytest.raises(ValueError, match="pass labels"):
        up_down(labelled, torch.zeros(2, 4), progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\. 1"):
        up_down(labelled, torch.zeros(2, 4), labels=torch.tensor([0, 2]), progress=False)
    with pytest.raises(ValueError, match="samples must be an int"):
        estimators.dbn_log_likelihood(dbn, torch.zeros(2, 4), 0.0, samples=0)
    assert math.isfinite(estimators.dbn_log_likelihood(dbn, torch.zeros(2, 4), 0.0).value)


def test_up_down_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path):
    data = ebm.datasets.bars_and_stripes(3).double()

    def run(epochs, path):
        torch.manual_seed(0)
        dbn = DBN([9, 5, 4], labels=2).double()
        return dbn, up_down(
            dbn,
            data,
            labels=torch.arange(14) % 2,
            epochs=epochs,
            batch_size=7,
            lr=0.05,
            generator=torch.Generator().manual_seed(0),
            progress=False,
            checkpoint=path,
        )

    straight, _ = run(4, None)
    run(2, tmp_path / "ud.ckpt")
    resumed, history = run(4, tmp_path / "ud.ckpt")
    assert len(history) == 4 and [r["epoch"] for r in history.records] == [1, 2, 3, 4]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    other = DBN([9, 5, 3], labels=2).double()
    with pytest.raises(ValueError, match="not an up-down checkpoint of this DBN"):
        up_down(
            other,
            data,
            labels=torch.arange(14) % 2,
            epochs=5,
            progress=False,
            generator=torch.Generator(),
            checkpoint=tmp_path / "ud.ckpt",
        )
    with pytest.raises(ValueError, match="needs a generator"):
        up_down(other, data, labels=torch.arange(14) % 2, checkpoint=tmp_path / "x.ckpt")


def test_saved_dbn_loads_as_the_same_model_and_a_doctored_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    dbn = _randomize(DBN([6, 4, 3, 5], labels=3).double(), 1.0, 5)
    loaded = ebm.dbn.load_dbn(dbn.save(tmp_path / "dbn.safetensors"))
    assert loaded.spec() == dbn.spec()
    for (name, a), b in zip(dbn.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    tensors = {k: v.contiguous() for k, v in dbn.state_dict().items()}
    save_file(
        tensors,
        str(tmp_path / "bad.safetensors"),
        metadata={"boltzkit.dbn": '{"layers": [6, 4, 3, 500000], "labels": 3}'},
    )
    with pytest.raises(ValueError, match="do not make the DBN its metadata names"):
        ebm.dbn.load_dbn(tmp_path / "bad.safetensors")
    save_file(tensors, str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match="not a DBN written by DBN.save"):
        ebm.dbn.load_dbn(tmp_path / "none.safetensors")


def test_denoise_is_the_stated_blend_of_bottom_up_and_top_down():
    dbn = _randomize(DBN([6, 4, 3, 5], labels=3).double(), 1.0, 6)
    v = _binary(6)[::5]
    labels = torch.arange(len(v)) % 3
    with torch.no_grad():
        x_up = dbn.up(v, sample=False)[-1]
        plain = dbn.down(x_up, sample=False)[0]
        assert torch.allclose(dbn.denoise(v, sweeps=7, keep=1.0), plain)
        # one sweep by hand, the label clamped
        top = dbn.top.factors
        w, b, c = top["w"].weight, top["bias_x"].bias, top["bias_h"].bias
        u = top["u"].weight
        y = torch.eye(3, dtype=torch.float64)[labels]
        mu_h = torch.sigmoid(x_up @ w + y @ u + c)
        x = 0.3 * x_up + 0.7 * torch.sigmoid(mu_h @ w.T + b)
        expected = dbn.down(x, sample=False)[0]
        assert torch.allclose(dbn.denoise(v, labels=labels, sweeps=1, keep=0.3), expected)
    with pytest.raises(ValueError, match=r"keep must lie in \[0, 1\]"):
        dbn.denoise(v, keep=1.5)
