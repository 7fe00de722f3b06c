"""A prepared check for a machine with CUDA: correctness of the CUDA paths against exact answers,
then the cost of block Gibbs and AIS as the model grows (``scale_cost.py`` on the GPU), written as
one JSON record.

    PYTHONPATH=. python benchmarks/device_check.py --json record.json   # a few minutes on a GPU

Checks (each an assertion; the record says which passed):

- AIS on a 20 x 10 RBM in float64 on the GPU within 4 standard errors of the exact log Z;
- a strong spin glass flags its AIS estimate as untrusted on the GPU, an easy one does not;
- block Gibbs with the visible block of 100,000 units clamped keeps it and draws binary units;
- the one Gibbs update's kept-buffer path equals its plain path bit for bit, and ``run`` equals
  as many ``step`` calls;
- a model built from float64 parameters stays float64 on the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ebm  # noqa: E402
import estimators  # noqa: E402
import samplers  # noqa: E402
from tests.helpers import strip_glass, transfer_matrix_log_z  # noqa: E402

CUDA = torch.device("cuda")


def check_ais_exact() -> dict:
    g = torch.Generator().manual_seed(0)
    model = ebm.models.rbm(
        20, 10, weight=0.5 * torch.randn(20, 10, generator=g, dtype=torch.float64)
    )
    exact = estimators.exact_log_z(model).value
    est = estimators.ais(
        model.to(CUDA),
        num_chains=1000,
        betas=1000,
        generator=torch.Generator(CUDA).manual_seed(1),
        progress=False,
    )
    z = (est.value - exact) / est.stderr
    assert abs(z) < 4, z
    return {"exact": exact, "ais": est.value, "stderr": est.stderr, "z": z}


def check_glass_flags() -> dict:
    out = {}
    for scale, expect in [(3.0, False), (0.5, True)]:
        horizontal, vertical = strip_glass(8, 40, scale, seed=1)
        model = ebm.models.checkerboard_ising(8, 40, horizontal, vertical).to(CUDA)
        truth = transfer_matrix_log_z(horizontal, vertical)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = estimators.ais(
                model,
                num_chains=100,
                betas=1000,
                generator=torch.Generator(CUDA).manual_seed(2),
                progress=False,
            )
        assert est.trusted == expect, (scale, est)
        out[f"scale_{scale}"] = {"z": (est.value - truth) / est.stderr, "trusted": est.trusted}
    return out


def check_clamped_gibbs() -> dict:
    model = ebm.models.rbm(100_000, 16).to(CUDA)
    v = (torch.rand(4, 100_000, device=CUDA) < 0.5).float()
    gibbs = samplers.BlockGibbs(
        model, clamp={"v": v}, generator=torch.Generator(CUDA).manual_seed(0)
    )
    state = gibbs.run(gibbs.init(4), 3)
    assert torch.equal(state["v"], v) and ((state["h"] == 0) | (state["h"] == 1)).all()
    return {"ok": True}


def check_sweep_buffers() -> dict:
    """The one Gibbs update on CUDA: the kept-buffer path draws what the plain path draws, bit for
    bit (a float beta with a base, a beta per row, beta = 1), and ``BlockGibbs.run`` gives the
    chains of as many ``step`` calls."""
    from samplers.sweep import gibbs_sweep

    g = torch.Generator().manual_seed(0)
    model = ebm.models.rbm(50, 30, weight=torch.randn(50, 30, generator=g)).to(CUDA)
    start = {
        b: model.units[b].random(64, torch.Generator(CUDA).manual_seed(1), device=CUDA)
        for b in model.blocks
    }
    settings = {
        "base": {"beta": 0.3, "base": {"v": torch.randn(50, device=CUDA)}},
        "per_row": {"beta": torch.linspace(0, 1, 64, device=CUDA)},
        "plain": {},
    }
    out = {"default backend": type(ebm.backend.backend_for(CUDA)).__name__}
    for backend in ("torch", "cpu-blas"):  # the reference, and the in-place path on CUDA
        for name, kw in settings.items():
            plain, kept, work = dict(start), dict(start), {}
            g1, g2 = (torch.Generator(CUDA).manual_seed(2) for _ in range(2))
            with ebm.backend.use_backend(backend):
                for _ in range(5):
                    plain = gibbs_sweep(model, plain, model.schedule, g1, **kw)
                    kept = gibbs_sweep(model, kept, model.schedule, g2, work=work, **kw)
            out[f"{backend} {name}"] = all(torch.equal(plain[b], kept[b]) for b in model.blocks)
    gibbs = samplers.BlockGibbs(model, generator=torch.Generator(CUDA).manual_seed(4))
    first = gibbs.init(16)
    ran = gibbs.run(first, 7)
    gibbs.generator = torch.Generator(CUDA).manual_seed(4)
    gibbs.init(16)  # the same draws as before the run
    stepped = first
    for _ in range(7):
        stepped, _ = gibbs.step(stepped)
    out["run_equals_step"] = all(torch.equal(ran[b], stepped[b]) for b in model.blocks)
    assert all(v for k, v in out.items() if k != "default backend"), out
    assert out["default backend"] == "TorchBackend", out
    return out


def check_float64() -> dict:
    model = ebm.models.rbm(5, 3, weight=torch.ones(5, 3, dtype=torch.float64)).to(CUDA)
    assert model.dtype == torch.float64
    return {"dtype": str(model.dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "checks": {}}
    for name, check in [
        ("ais_exact", check_ais_exact),
        ("glass_flags", check_glass_flags),
        ("clamped_gibbs", check_clamped_gibbs),
        ("sweep_buffers", check_sweep_buffers),
        ("float64", check_float64),
    ]:
        start = time.perf_counter()
        try:
            record["checks"][name] = {"passed": True, **check()}
        except AssertionError as err:
            record["checks"][name] = {"passed": False, "error": repr(err)}
        record["checks"][name]["seconds"] = time.perf_counter() - start
        print(name, record["checks"][name], flush=True)
        args.json.write_text(json.dumps(record, indent=2))
    sys.argv = [
        sys.argv[0],
        "--device",
        "cuda",
        "--sizes",
        *map(str, args.sizes),
        "--betas",
        "500",
        "--few",
        "50",
        "--sweeps",
        "20",
        "--json",
        str(args.json.with_name("scale_cost_cuda.json")),
    ]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale_cost

    scale_cost.main()
    record["scale_cost"] = json.loads(args.json.with_name("scale_cost_cuda.json").read_text())
    args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
