"""A user-defined factor that only implements energy() must behave exactly like the built-in one."""

import torch

import ebm
import samplers
from ebm.factors import Bias, Dense, Factor
from ebm.units import Bernoulli


class Bilinear(Factor):
    """E = -a^T M b, with no natural(): conditionals come from autograd."""

    def __init__(self, a, b, weight):
        super().__init__(a, b)
        self.weight = torch.nn.Parameter(weight.clone())

    def energy(self, stats):
        a, b = self.blocks
        return -((stats[a] @ self.weight) * stats[b]).sum(-1)


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    w, b, c = (
        torch.randn(7, 5, generator=g),
        torch.randn(7, generator=g),
        torch.randn(5, generator=g),
    )
    builtin = ebm.models.rbm(7, 5, weight=w, visible_bias=b, hidden_bias=c)
    graph = ebm.Graph().add_block("v", Bernoulli(7)).add_block("h", Bernoulli(5))
    graph.add_factor(Bilinear("v", "h", w), Bias("v", b), Bias("h", c))
    return builtin, ebm.EnergyModel(graph)


def test_custom_factor_conditionals_match_dense():
    builtin, custom = _pair()
    g = torch.Generator().manual_seed(3)
    v = torch.bernoulli(torch.full((11, 7), 0.5), generator=g)
    h = torch.bernoulli(torch.full((11, 5), 0.5), generator=g)
    torch.testing.assert_close(
        custom.natural("h", {"v": v, "h": h}), builtin.natural("h", {"v": v, "h": h})
    )
    torch.testing.assert_close(
        custom.natural("v", {"v": v, "h": h}), builtin.natural("v", {"v": v, "h": h})
    )
    pc, pb = custom.conditional("h", {"v": v}), builtin.conditional("h", {"v": v})
    torch.testing.assert_close(pc.mean, pb.mean)
    torch.testing.assert_close(custom.energy({"v": v, "h": h}), builtin.energy({"v": v, "h": h}))
    torch.testing.assert_close(custom.free_energy({"v": v}), builtin.free_energy({"v": v}))
    torch.testing.assert_close(custom.free_energy({"h": h}), builtin.free_energy({"h": h}))


def test_custom_factor_samples_match_dense():
    builtin, custom = _pair(1)
    chains = []
    for model in (builtin, custom):
        gibbs = samplers.BlockGibbs(model)
        state = gibbs.init(50, generator=torch.Generator().manual_seed(9))
        chains.append(gibbs.run(state, 20))
    assert torch.equal(chains[0]["v"], chains[1]["v"])
    assert torch.equal(chains[0]["h"], chains[1]["h"])


def test_custom_factor_free_energy_is_differentiable():
    _, custom = _pair(2)
    v = torch.ones(3, 7)
    custom.free_energy({"v": v}).sum().backward()
    assert custom.factors["bilinear_v_h"].weight.grad is not None
    assert custom.factors["bilinear_v_h"].weight.grad.abs().sum() > 0


def test_dense_natural_is_minus_energy_gradient():
    model = ebm.models.rbm(4, 3, weight=torch.randn(4, 3))
    dense = model.factors["dense_v_h"]
    stats = {"v": torch.rand(2, 4), "h": torch.rand(2, 3)}
    auto = ebm.factors.natural_from_energy(dense, "h", stats)
    torch.testing.assert_close(dense.natural("h", stats), auto)
    assert isinstance(dense, Dense)
