import pytest
import torch

import ebm
from ebm.factors import Factor, register
from tests.helpers import random_rbm


def test_rbm_round_trip_is_exact(tmp_path):
    model = random_rbm(6, 4, scale=1.0, seed=0)
    path = ebm.save(model, tmp_path / "rbm.safetensors")
    loaded = ebm.load(path)
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    state = {"v": torch.ones(3, 6), "h": torch.zeros(3, 4)}
    assert torch.equal(model.energy(state), loaded.energy(state))
    assert loaded.schedule == model.schedule and loaded.visible == model.visible


def test_gaussian_float64_round_trip(tmp_path):
    model = ebm.models.gaussian_rbm(3, 2, learn_variance=True, scale=[0.5, 1.0, 2.0]).double()
    loaded = ebm.load(ebm.save(model, tmp_path / "g.safetensors"))
    assert loaded.dtype == torch.float64
    assert torch.equal(loaded.units["v"].log_scale, model.units["v"].log_scale)
    assert isinstance(loaded.units["v"].log_scale, torch.nn.Parameter)


def test_pickle_files_are_refused(tmp_path):
    model = random_rbm(3, 2, scale=1.0, seed=0)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="refusing to load a pickle"):
        ebm.load(tmp_path / "weights.pt")
    import pickle

    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="refusing to load a pickle"):
        ebm.load(tmp_path / "raw.pkl")
    (tmp_path / "junk").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="not a safetensors file"):
        ebm.load(tmp_path / "junk")
    with pytest.raises(FileNotFoundError):
        ebm.load(tmp_path / "missing.safetensors")


def test_safetensors_without_spec_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="without a boltzkit graph spec"):
        ebm.load(tmp_path / "bare.safetensors")


class Scaled(Factor):
    def __init__(self, a, b, name=None):
        super().__init__(a, b, name=name)
        self.s = torch.nn.Parameter(torch.tensor(0.0))

    def energy(self, stats):
        return -self.s * stats[self.blocks[0]].sum(-1) * stats[self.blocks[1]].sum(-1)


def test_custom_factor_needs_registration(tmp_path):
    g = ebm.Graph().add_block("a", ebm.units.Bernoulli(2)).add_block("b", ebm.units.Spin(2))
    g.add_factor(Scaled("a", "b"))
    model = ebm.EnergyModel(g)
    with torch.no_grad():
        model.factors["scaled_a_b"].s.fill_(0.7)
    with pytest.raises(ValueError, match="Scaled is not registered.*register"):
        ebm.save(model, tmp_path / "custom.safetensors")
    register(Scaled)
    path = ebm.save(model, tmp_path / "custom.safetensors")
    loaded = ebm.load(path)
    assert float(loaded.factors["scaled_a_b"].s.detach()) == pytest.approx(0.7)


class Tempered(ebm.factors.Factor):
    """A custom factor whose energy depends on constructor arguments of every kind."""

    def __init__(self, a, b, temperature=1.0, mask=None, options=None, name=None):
        super().__init__(a, b, name=name)
        self.temperature = temperature
        self.mask = torch.ones(3, dtype=torch.float64) if mask is None else mask
        self.shift = (options or {}).get("shift", (0.0,))[0]
        self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def energy(self, stats):
        v = (stats["v"] * self.mask.to(stats["v"].dtype)).sum(-1)
        return -self.w * (v * stats["h"].sum(-1) + self.shift) / self.temperature


class Forgetful(Tempered):
    """The same energy with a config() that forgets the temperature."""

    def config(self):
        return {"blocks": list(self.blocks), "name": self.name}


register(Tempered)
register(Forgetful)


def _tempered_model(cls, *args, **kwargs):
    g = ebm.Graph().add_block("v", ebm.units.Bernoulli(3), visible=True)
    g.add_block("h", ebm.units.Bernoulli(2)).add_factor(cls("v", "h", *args, **kwargs))
    return ebm.EnergyModel(g).double()


def test_custom_factor_arguments_round_trip(tmp_path):
    """Positional, keyword, tensor and nested (dict of tuple) constructor arguments come back
    through the default config(): energies equal to 1e-12 on every state."""
    from tests.helpers import brute_log_z, joint_states

    model = _tempered_model(
        Tempered,
        0.25,
        mask=torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64),
        options={"shift": (0.3, "unused")},
    )
    with torch.no_grad():
        model.factors["tempered_v_h"].w.fill_(0.8)
    loaded = ebm.load(ebm.save(model, tmp_path / "tempered.safetensors"))
    states = joint_states(model)
    with torch.no_grad():
        assert torch.allclose(loaded.energy(states), model.energy(states), rtol=0, atol=1e-12)
    assert brute_log_z(loaded) == pytest.approx(brute_log_z(model), abs=1e-12)


def test_a_model_that_would_load_different_is_refused(tmp_path):
    """A factor whose own config() misses a constructor argument (its temperature) saves, but
    would load as another model: the fingerprint (energies of the saved states) refuses it. An
    argument that cannot be saved (a function) is refused at save, naming the factor."""
    path = ebm.save(_tempered_model(Forgetful, 0.25), tmp_path / "forgetful.safetensors")
    with pytest.raises(ValueError, match="not the one saved.*config"):
        ebm.load(path)
    with pytest.raises(ValueError, match="'tempered_v_h'.*cannot be saved.*config"):
        ebm.save(
            _tempered_model(Tempered, 0.25, options={"shift": (0.0,), "f": lambda x: x}),
            tmp_path / "lambda.safetensors",
        )


def test_a_crafted_huge_spec_is_refused_at_once_without_allocating(tmp_path):
    """A 1 KB file whose spec claims an RBM of 30,000 x 30,000 units (a 3.6 GB weight) but holds
    a 6 x 3 one: refused naming the shapes, in well under a second, the process's peak resident
    set staying far below the weight's size."""
    import json
    import subprocess
    import sys

    from safetensors.torch import save_file

    small = ebm.models.rbm(6, 3)
    spec = small.spec()
    for block in spec["blocks"]:
        block["config"]["n"] = 30_000
    path = tmp_path / "crafted.safetensors"
    tensors = {k: v.detach().contiguous() for k, v in small.state_dict().items()}
    save_file(tensors, str(path), metadata={"boltzkit.graph": json.dumps(spec)})
    code = (
        "import re, time\n"
        "import ebm\n"
        "start = time.perf_counter()\n"
        "try:\n"
        f"    ebm.load({str(path)!r})\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
        "status = open('/proc/self/status').read()\n"
        "print(time.perf_counter() - start, re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "refused:" in lines[0] and "(30000, 30000)" in lines[0] and "(6, 3)" in lines[0]
    seconds, peak_kib = lines[-1].split()  # the process's peak resident set (VmHWM, KiB)
    assert float(seconds) < 1.0
    assert int(peak_kib) < 1_500_000  # far below the 3.6 GB weight the spec claims


def test_a_header_length_that_begins_like_a_pickle_is_still_read(tmp_path):
    """A safetensors header length whose first byte is 0x80 (a header of 128 + 256 k bytes) is
    not mistaken for a pickle: the JSON header that follows tells them apart; a real pickle is
    refused."""
    import struct

    from ebm.io import _check_safetensors

    header = b'{"__metadata__":{"x":"y"}}'
    header += b" " * (0x180 - len(header))
    path = tmp_path / "padded.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert path.read_bytes()[0] == 0x80
    with pytest.raises(ValueError, match="without a boltzkit graph spec"):
        _check_safetensors(path)
    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pickled, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="refusing to load a pickle"):
        _check_safetensors(pickled)
