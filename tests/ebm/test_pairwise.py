"""Pairwise: a sparse coupling between two blocks, against the Dense coupling it equals."""

import pytest
import torch

import ebm
import estimators
import samplers


def _pair(edges, weight, units=ebm.units.Bernoulli, sizes=(5, 4)):
    """The same model twice: a sparse Pairwise coupling, and Dense with W zero off the edges."""
    dense_w = torch.zeros(sizes, dtype=torch.float64)
    for (i, j), w in zip(edges, weight.tolist(), strict=True):
        dense_w[i, j] = w
    g = torch.Generator().manual_seed(7)
    biases = (
        torch.randn(sizes[0], generator=g, dtype=torch.float64),
        torch.randn(sizes[1], generator=g, dtype=torch.float64),
    )
    models = []
    for coupling in (
        ebm.factors.Pairwise("a", "b", edges=edges, weight=weight),
        ebm.factors.Dense("a", "b", weight=dense_w),
    ):
        graph = ebm.Graph()
        graph.add_block("a", units(sizes[0]), visible=True)
        graph.add_block("b", units(sizes[1]))
        graph.add_factor(coupling)
        graph.add_factor(ebm.factors.Bias("a", bias=biases[0]))
        graph.add_factor(ebm.factors.Bias("b", bias=biases[1]))
        models.append(ebm.EnergyModel(graph))
    return models


EDGES = [(0, 0), (0, 3), (2, 1), (4, 3), (3, 2), (1, 0)]


@pytest.mark.parametrize("units", [ebm.units.Bernoulli, ebm.units.Spin])
def test_pairwise_is_the_dense_coupling_zero_off_its_edges(units):
    """Energies, both blocks' natural parameters and the exact log Z equal those of Dense with
    the same weights on the edges and zeros elsewhere (float64, to rounding)."""
    weight = torch.randn(
        len(EDGES), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    sparse, dense = _pair(EDGES, weight, units)
    state = {
        "a": units(5).random(64, torch.Generator().manual_seed(2), dtype=torch.float64),
        "b": units(4).random(64, torch.Generator().manual_seed(3), dtype=torch.float64),
    }
    torch.testing.assert_close(sparse.energy(state), dense.energy(state))
    for block in ("a", "b"):
        torch.testing.assert_close(sparse.natural(block, state), dense.natural(block, state))
    exact = estimators.exact_log_z(dense).value
    assert estimators.exact_log_z(sparse).value == pytest.approx(exact, abs=1e-10)


def test_pairwise_samples_trains_and_saves(tmp_path):
    """Block Gibbs on every backend, a CD step that moves only the edge weights, and a save and
    load that gives back the same energies."""
    weight = torch.randn(len(EDGES), generator=torch.Generator().manual_seed(4))
    sparse, _ = _pair(EDGES, weight)
    sparse = sparse.float()
    for backend in ("torch", "cpu"):
        with ebm.backend.use_backend(backend):
            gibbs = samplers.BlockGibbs(sparse, generator=torch.Generator().manual_seed(5))
            state = gibbs.run(gibbs.init(16), 5)
        assert ((state["b"] == 0) | (state["b"] == 1)).all()
    data = torch.bernoulli(torch.full((40, 5), 0.3), generator=torch.Generator().manual_seed(6))
    before = sparse.factors["pairwise_a_b"].weight.detach().clone()
    ebm.fit(sparse, data, samplers.CD(k=1), epochs=1, batch_size=20, lr=0.1, progress=False)
    assert not torch.equal(sparse.factors["pairwise_a_b"].weight, before)
    loaded = ebm.load(ebm.save(sparse, tmp_path / "pairwise.safetensors"))
    torch.testing.assert_close(loaded.energy(state), sparse.energy(state))


def test_pairwise_refuses_bad_edges_by_name():
    with pytest.raises(ValueError, match=r"term 0 \(1, 1\) repeats a unit"):
        ebm.factors.Pairwise("a", edges=[(1, 1)])
    with pytest.raises(ValueError, match=r"edge \(0, 3\) is given 2 times"):
        ebm.factors.Pairwise("a", "b", edges=[(0, 3), (1, 1), (0, 3)])
    with pytest.raises(ValueError, match=r"\(m, 2\) array of integer"):
        ebm.factors.Pairwise("a", "b", edges=[[0.5, 1.0]])
    with pytest.raises(ValueError, match="from 0"):
        ebm.factors.Pairwise("a", "b", edges=[(-1, 0)])
    g = ebm.Graph()
    g.add_block("a", ebm.units.Bernoulli(3), visible=True)
    g.add_block("b", ebm.units.Bernoulli(2))
    with pytest.raises(ValueError, match="names unit 2 of block 'b', which has 2 units"):
        g.add_factor(ebm.factors.Pairwise("a", "b", edges=[(0, 1), (1, 2)]))
