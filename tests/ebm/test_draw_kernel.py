"""The fused CPU kernel for binary draws (``ebm.backend.draws``): right probabilities, reproducible,
the same whatever the thread count, and used by the Bernoulli and Spin unit types."""

import math
from pathlib import Path

import pytest
import torch

import ebm
from ebm.backend import draws as kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def test_draws_have_the_sigmoid_probabilities():
    """2,000 draws of 1,000 units with logits from -8 to 8: each unit's frequency is within
    binomial error of sigma(eta) (the sum of squared z-scores is chi-square with 1,000 degrees of
    freedom: within 5 of its standard deviations sqrt(2000)), and the two elements that share a
    64-bit output (j and j + L in each block of 2L) are uncorrelated within 4 standard errors."""
    eta = torch.linspace(-8, 8, 1000, dtype=torch.float64).repeat(2000, 1)
    x = ebm.units.Bernoulli(1000).sample(eta, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) == {0.0, 1.0} and x.dtype == torch.float64
    p = torch.sigmoid(eta[0])
    z = (x.mean(0) - p) / (p * (1 - p) / 2000).sqrt()
    assert abs(float((z**2).sum()) - 1000) < 5 * math.sqrt(2000)
    flat = ebm.units.Bernoulli(1).sample(torch.zeros(2_000_000, 1), torch.Generator())[:, 0]
    pairs = flat[: len(flat) // (2 * kernels._PAIRS) * 2 * kernels._PAIRS].view(
        -1, 2, kernels._PAIRS
    )
    r = torch.corrcoef(torch.stack([pairs[:, 0].flatten(), pairs[:, 1].flatten()]))[0, 1]
    assert abs(float(r)) < 4 / math.sqrt(pairs[:, 0].numel())


def test_seeded_draws_repeat_and_do_not_depend_on_threads():
    eta = torch.randn(300, 777)
    threads = torch.get_num_threads()
    draws = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            draws.append(ebm.units.Bernoulli(777).sample(eta, torch.Generator().manual_seed(3)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    other = ebm.units.Bernoulli(777).sample(eta, torch.Generator().manual_seed(4))
    assert not torch.equal(draws[0], other)


def test_spin_draws_and_probability_resolution():
    """Spin units take -1/+1 with P(+1) = sigma(2 eta); a probability of 0 is never drawn and one
    of 1 always is (uniforms in [0, 1) on a grid of 2^-24, as torch.rand's)."""
    eta = torch.full((200_000, 2), 0.3)
    s = ebm.units.Spin(2).sample(eta, torch.Generator().manual_seed(1))
    p = float(torch.sigmoid(torch.tensor(0.6)))
    se = math.sqrt(p * (1 - p) / 400_000)
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(float((s == 1).double().mean()) - p) < 4 * se
    probs = torch.tensor([0.0, 1.0]).repeat(50_000)
    out = kernels.binary_from_probs_(probs.clone(), torch.Generator().manual_seed(0))
    assert out[0::2].sum() == 0 and out[1::2].sum() == 50_000
    with pytest.raises(ValueError, match="contiguous"):
        kernels.binary_from_probs_(torch.rand(4, 4).T, None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draws_in_torch_thread_team_equal_those_on_one_thread(dtype, monkeypatch):
    """Split over teams of 2, 3 and 4 of torch's OpenMP threads (each member takes a slice of the
    outputs; odd sizes leave the last element to the last member), the draws are those of the
    calling thread alone, element for element."""
    threads = torch.get_num_threads()
    sizes = (1, 2, 3, 7, 4097, 65_536, 65_537, 300_001)
    try:
        for n in sizes:
            probs = torch.rand(n, dtype=dtype, generator=torch.Generator().manual_seed(n))
            monkeypatch.setattr(kernels, "PARALLEL_MIN_ELEMENTS", 1 << 62)
            alone = kernels.binary_from_probs_(probs.clone(), torch.Generator().manual_seed(7))
            monkeypatch.setattr(kernels, "PARALLEL_MIN_ELEMENTS", 1)
            for team in (2, 3, 4):
                torch.set_num_threads(team)
                split = kernels.binary_from_probs_(probs.clone(), torch.Generator().manual_seed(7))
                assert torch.equal(split, alone), (n, team)
            torch.set_num_threads(threads)
    finally:
        torch.set_num_threads(threads)


def test_team_is_torchs_own_openmp_runtime():
    """Where torch runs on OpenMP, the kernel starts its teams with that runtime, even when other
    packages have loaded their own copies (scikit-learn does; its tests run here first): another
    copy's pool of threads would compete with torch's for the cores."""
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch is not built with OpenMP here")
    from sklearn.datasets import load_digits  # noqa: F401 - brings scikit-learn's libgomp

    kernels.binary_from_probs_(torch.rand(1 << 16), None)
    assert kernels._LIB["parallel"] is not None
    torch_lib = Path(torch.__file__).parent / "lib"
    with open("/proc/self/maps") as f:
        loaded = {line.split()[-1] for line in f if "libgomp" in line or "libiomp5" in line}
    ours = [p for p in loaded if Path(p).parent == torch_lib]
    if ours:  # torch ships its runtime (pip wheels): that one, whatever else is loaded
        assert kernels._LIB["runtime"] == ours[0]
    else:
        assert kernels._LIB["runtime"] in loaded


def test_without_an_openmp_runtime_the_draws_are_the_same_on_the_calling_thread():
    """Where no OpenMP runtime is loaded the kernel runs on the calling thread alone (a team of
    one); its draws are those the team draws here, element for element."""
    import subprocess
    import sys

    script = (
        "import torch\nfrom ebm.backend import draws as kernels\n"
        "kernels._openmp_runtime = lambda: None\n"
        "p = torch.rand(300_001, generator=torch.Generator().manual_seed(2))\n"
        "x = kernels.binary_from_probs_(p, torch.Generator().manual_seed(9))\n"
        "assert kernels._LIB['parallel'] is None\n"
        "print(''.join(str(int(v)) for v in x[:64].tolist()), int(x.sum()))\n"
    )
    alone = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    p = torch.rand(300_001, generator=torch.Generator().manual_seed(2))
    x = kernels.binary_from_probs_(p, torch.Generator().manual_seed(9))
    assert alone.stdout.split() == [
        "".join(str(int(v)) for v in x[:64].tolist()),
        str(int(x.sum())),
    ]


def test_a_new_process_loads_the_compiled_callbacks_from_the_cache():
    """The callbacks are module-level functions (no closures), so numba's on-disk cache hits in
    a second interpreter instead of compiling again."""
    import subprocess
    import sys

    code = (
        "import ebm.backend.draws as k\n"
        "assert k.available()\n"
        "from ebm.backend import _numba_draws as d\n"
        "print(d.member_float32.cache_hits, d.member_float64.cache_hits)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    assert runs[1].stdout.split() == ["1", "1"], runs[1].stdout
