import networkx as nx
import pytest
import torch

import ebm
from ebm.factors import Bias, Dense
from ebm.units import Bernoulli, Categorical


def test_rbm_schedule_has_two_colours():
    model = ebm.models.rbm(5, 3)
    assert sorted(map(sorted, model.schedule)) == [["h"], ["v"]]
    assert model.visible == ["v"]


def test_chain_of_blocks_colours_odd_and_even():
    g = ebm.Graph()
    for name in ("v", "h1", "h2", "h3"):
        g.add_block(name, Bernoulli(2))
    g.add_factor(Dense("v", "h1"), Dense("h1", "h2"), Dense("h2", "h3"))
    schedule = ebm.EnergyModel(g).schedule
    assert len(schedule) == 2
    assert sorted(map(sorted, schedule)) == [["h1", "h3"], ["h2", "v"]]


def test_triangle_needs_three_colours():
    g = ebm.Graph()
    for name in "abc":
        g.add_block(name, Bernoulli(2))
    g.add_factor(Dense("a", "b"), Dense("b", "c"), Dense("a", "c"))
    assert len(g.schedule()) == 3


def test_to_networkx_is_bipartite_factor_graph():
    model = ebm.models.rbm(4, 2)
    nxg = model.graph.to_networkx()
    kinds = nx.get_node_attributes(nxg, "kind")
    assert sorted(n for n, k in kinds.items() if k == "block") == ["h", "v"]
    assert sorted(n for n, k in kinds.items() if k == "factor") == ["bias_h", "bias_v", "dense_v_h"]
    assert nx.is_bipartite(nxg)
    assert set(nxg.neighbors("dense_v_h")) == {"v", "h"}


def test_unknown_block_is_named():
    g = ebm.Graph().add_block("v", Bernoulli(3))
    with pytest.raises(ValueError, match=r"factor 'dense_v_hidden' touches unknown block 'hidden'"):
        g.add_factor(Dense("v", "hidden"))


def test_duplicate_names_are_refused():
    g = ebm.Graph().add_block("v", Bernoulli(3)).add_block("h", Bernoulli(2))
    with pytest.raises(ValueError, match=r"duplicate name 'v'"):
        g.add_block("v", Bernoulli(2))
    g.add_factor(Bias("v"))
    with pytest.raises(ValueError, match=r"duplicate name 'bias_v'.*name="):
        g.add_factor(Bias("v"))
    g.add_factor(Bias("v", name="bias_v2"))
    with pytest.raises(ValueError, match="duplicate name 'h'"):
        g.add_factor(Bias("v", name="h"))


def test_shape_mismatch_names_factor():
    g = ebm.Graph().add_block("v", Bernoulli(3)).add_block("h", Bernoulli(2))
    with pytest.raises(ValueError, match=r"factor 'dense_v_h'.*\(3, 2\)"):
        g.add_factor(Dense("v", "h", weight=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"factor 'bias_h'.*shape"):
        g.add_factor(Bias("h", bias=torch.zeros(3)))


def test_custom_factor_with_wrong_shape_is_caught_by_the_probe():
    class Broken(ebm.factors.Factor):
        def __init__(self):
            super().__init__("v", "h")
            self.w = torch.nn.Parameter(torch.zeros(5, 5))

        def energy(self, stats):
            return -((stats["v"] @ self.w) * stats["h"]).sum(-1)

    g = ebm.Graph().add_block("v", Bernoulli(3)).add_block("h", Bernoulli(2))
    with pytest.raises(ValueError, match=r"factor 'broken_v_h' does not fit its blocks"):
        g.add_factor(Broken())


def test_self_coupling_is_refused():
    g = ebm.Graph().add_block("v", Bernoulli(3))
    with pytest.raises(ValueError, match=r"couples block 'v' to itself"):
        g.add_factor(Dense("v", "v"))


def test_categorical_blocks_flatten_in_dense():
    g = ebm.Graph().add_block("c", Categorical(2, 3)).add_block("h", Bernoulli(4))
    g.add_factor(Dense("c", "h"))
    assert g.factors["dense_c_h"].weight.shape == (6, 4)


def test_draw_writes_png(tmp_path):
    path = ebm.models.rbm(4, 2).graph.draw(tmp_path / "graph.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_bad_arguments():
    with pytest.raises(ValueError, match="block name"):
        ebm.Graph().add_block("a.b", Bernoulli(2))
    with pytest.raises(TypeError, match="Units"):
        ebm.Graph().add_block("a", 3)
    with pytest.raises(ValueError, match="no blocks"):
        ebm.EnergyModel(ebm.Graph())
