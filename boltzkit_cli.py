"""The ``ebm`` command line: train, estimate, compare, demo. A module of its own above the three
packages: it imports ``ebm``, ``samplers`` and ``estimators``, and none of them imports it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import NoReturn

import torch
import typer
from rich.console import Console
from rich.table import Table

import ebm
import estimators
import samplers
from ebm.io import UnknownTypeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Declare, train, sample and evaluate energy-based models.",
)
console = Console()
errors = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)

#: the exit status of an error in the user's input (typer's own for bad arguments)
USAGE_ERROR = 2


@contextmanager
def user_input(what: str) -> Iterator[None]:
    """Turn a refusal of the user's input into one line on stderr and exit status 2.

    Wraps the steps that read what the user gave (a model file, a ``--data`` value, a model that
    must fit the data, options the model must support): ValueError (the library's refusals of
    bad arguments), OSError (a missing or unreadable file) and typer's BadParameter print
    ``Error: <what>: <message>``. Any other exception is a real crash and keeps its traceback.
    """
    try:
        yield
    except (ValueError, OSError, typer.BadParameter) as err:
        message = err.message if isinstance(err, typer.BadParameter) else str(err)
        if isinstance(err, FileNotFoundError) and err.filename is not None:
            message = f"no such file or directory: {err.filename}"
        usage_error(what, message or type(err).__name__)


def usage_error(what: str, message: str) -> NoReturn:
    """Print ``Error: <what>: <message>`` as one line on stderr and exit with status 2."""
    errors.print(f"Error: {what}: {' '.join(message.split())}")
    raise typer.Exit(USAGE_ERROR) from None


def load_model(path: Path, imports: list[str] | None = None) -> ebm.EnergyModel:
    """``ebm.load(path)`` after importing ``imports`` (``import_definitions``), a refused file
    reported as a usage error (exit status 2); an unknown factor or unit type names --import."""
    import_definitions(imports or [])
    with user_input("cannot load the model"):
        try:
            return ebm.load(path)
        except UnknownTypeError as err:
            raise ValueError(
                f"{err}; for a custom type, import the module that defines and registers it "
                f"with --import MODULE_OR_FILE"
            ) from None


def import_definitions(specs: list[str]) -> None:
    """Import each of ``specs`` (a module name, or the path of a .py file) so that the factor
    and unit types it registers (``ebm.factors.register``) can be loaded. A module that cannot
    be found is a usage error (exit status 2); an error inside the user's module keeps its
    traceback."""
    import importlib
    import importlib.util
    import sys

    for spec in specs:
        path = Path(spec)
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                usage_error(f"--import {spec}", f"no such file: {spec}")
            name = f"_ebm_user_{path.stem}"
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
            continue
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as err:
            if err.name is None or not spec.startswith(err.name):
                raise  # the user's module imports something missing: its own traceback
            usage_error(
                f"--import {spec}",
                f"no module named {err.name!r} (give a module on the Python path or a .py file)",
            )


#: the ``--import`` option of the commands that load a model
IMPORT_OPTION = typer.Option(
    None,
    "--import",
    help="a module or .py file defining custom factors to import first (repeatable)",
)


class Method(str, Enum):
    exact = "exact"
    ais = "ais"
    bridge = "bridge"
    sandwich = "sandwich"


class SamplerName(str, Enum):
    pcd = "pcd"
    cd = "cd"


class CompareSampler(str, Enum):
    gibbs = "gibbs"
    metropolis = "metropolis"
    pt = "pt"
    hmc = "hmc"


class BaseName(str, Enum):
    base_rate = "base-rate"
    uniform = "uniform"


class PathName(str, Enum):
    geometric = "geometric"
    mavg = "mavg"


def load_data(spec: str, binarize: str = "threshold", seed: int = 0):
    """(train, test) tensors from a data spec: ``digits``, ``bars-and-stripes:N`` (train = test =
    all patterns) or ``mnist:DIRECTORY``."""
    with user_input(f"--data {spec}"):
        return _read_data(spec, binarize, seed)


def _read_data(spec: str, binarize: str, seed: int):
    name, _, arg = spec.partition(":")
    if binarize not in ("threshold", "stochastic"):
        raise ValueError(f"--binarize must be threshold or stochastic, got {binarize!r}")
    if name == "digits":
        return ebm.datasets.digits(binarize=binarize, seed=seed)
    if name == "bars-and-stripes":
        if arg and not arg.strip().isdigit():
            raise ValueError(f"bars-and-stripes:N needs a whole number N, got {arg!r}")
        data = ebm.datasets.bars_and_stripes(int(arg or 3))
        return data, data
    if name == "mnist":
        if not arg:
            raise ValueError("mnist needs a directory: mnist:/path/to/idx/files")
        return ebm.datasets.mnist(arg, binarize=binarize, seed=seed)
    raise ValueError("unknown data: use digits, bars-and-stripes:N or mnist:DIR")


def check_fits(model: ebm.EnergyModel, data, spec: str) -> None:
    """``data`` checked against the model's visible block (a usage error when it does not fit);
    the test split comes from the same loader, so checking the training split covers both."""
    with user_input(f"--data {spec} for this model"):
        model.validate_data(data)


def _train(
    data: str,
    hidden: int,
    epochs: int,
    sampler: SamplerName,
    k: int,
    chains: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    seed: int,
    binarize: str,
):
    train, test = load_data(data, binarize, seed)
    torch.manual_seed(seed)
    model = ebm.models.rbm(train.shape[1], hidden)
    neg = samplers.PCD(num_chains=chains, k=k) if sampler == SamplerName.pcd else samplers.CD(k=k)
    g = torch.Generator().manual_seed(seed)
    bad = ebm.training.optimizer_setting_out_of_range(lr, momentum, weight_decay)
    if bad is not None:
        usage_error("training options", f"--{bad[0].replace('_', '-')} {bad[1]} is out of range")
    history = ebm.fit(
        model,
        train,
        neg,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        generator=g,
    )
    return model, train, test, history


@app.command()
def train(
    out: Path = typer.Option(Path("model.safetensors"), help="where to save the trained model"),
    data: str = typer.Option("digits", help="digits | bars-and-stripes:N | mnist:DIR"),
    hidden: int = typer.Option(16, min=1, help="number of hidden units"),
    epochs: int = typer.Option(30, min=0),
    sampler: SamplerName = typer.Option(SamplerName.pcd, help="negative phase"),
    k: int = typer.Option(1, min=1, help="Gibbs sweeps per update"),
    chains: int = typer.Option(100, min=1, help="persistent chains (PCD)"),
    batch_size: int = typer.Option(100, min=1),
    lr: float = typer.Option(0.05),
    momentum: float = typer.Option(0.5),
    weight_decay: float = typer.Option(1e-4),
    binarize: str = typer.Option("threshold", help="threshold | stochastic"),
    seed: int = typer.Option(0),
):
    """Train a binary RBM on DATA and save it (safetensors + JSON graph spec)."""
    if not out.parent.is_dir():
        usage_error(f"--out {out}", f"no such file or directory: {out.parent}")
    model, *_, history = _train(
        data,
        hidden,
        epochs,
        sampler,
        k,
        chains,
        batch_size,
        lr,
        momentum,
        weight_decay,
        seed,
        binarize,
    )
    with user_input(f"--out {out}"):
        ebm.save(model, out)
    status = " (interrupted)" if history.interrupted else ""
    console.print(f"trained {len(history)} epochs{status}; saved {out}")


@app.command()
def estimate(
    model_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="a saved model"),
    data: str = typer.Option("digits", help="digits | bars-and-stripes:N | mnist:DIR"),
    method: Method = typer.Option(Method.ais),
    chains: int = typer.Option(100, min=2, help="AIS chains"),
    betas: int = typer.Option(14500, min=2, help="AIS temperatures (Salakhutdinov-Murray shape)"),
    base: BaseName = typer.Option(BaseName.base_rate, help="AIS base distribution"),
    path: PathName = typer.Option(
        PathName.geometric, help="annealing path: geometric, or moment-averaged (binary RBMs)"
    ),
    binarize: str = typer.Option("threshold"),
    seed: int = typer.Option(0),
    examples: int = typer.Option(100, min=1, help="test examples for the sandwich"),
    workers: int = typer.Option(1, min=1, help="Ray tasks to shard AIS/RAISE over"),
    imports: list[str] = IMPORT_OPTION,
):
    """Print log Z (with its error) and the test log-likelihood of a saved model.

    exact: enumeration; ais: forward AIS; bridge: forward and reverse AIS combined (exact reverse
    starts, so enumerable models only); sandwich: the test log-likelihood between RAISE (lower)
    and AIS (upper) on the first --examples test images. --path mavg anneals AIS and RAISE along
    the moment-averaged path (binary RBMs) instead of the geometric one."""
    if path == PathName.mavg and method in (Method.exact, Method.bridge):
        raise typer.BadParameter(f"--path mavg is for --method ais or sandwich, not {method.value}")
    model = load_model(model_path, imports)
    train_data, test = load_data(data, binarize, seed)
    check_fits(model, train_data, data)
    gen = torch.Generator().manual_seed(seed)
    with user_input("this model"):
        base_dist = ebm.base_rate(model, train_data) if base == BaseName.base_rate else None
        path_obj = (
            estimators.moment_averaged_path(model, base_dist, generator=gen)
            if path == PathName.mavg
            else None
        )
    with user_input(f"--method {method.value} on this model"):
        if method == Method.sandwich:
            result = estimators.sandwich(
                model,
                test,
                num_chains=chains,
                betas=_schedule(betas),
                base=base_dist,
                generator=gen,
                num_examples=examples,
                workers=workers,
                path=path_obj,
            )
            console.print(str(result.extras["upper"].extras["log_z"]))
            console.print(str(result))
            return
        if method == Method.exact:
            logz = estimators.exact_log_z(model)
        elif method == Method.bridge:
            logz = estimators.bridge(
                model, num_chains=chains, betas=_schedule(betas), base=base_dist, generator=gen
            )
        else:
            logz = estimators.ais(
                model,
                num_chains=chains,
                betas=_schedule(betas),
                base=base_dist,
                generator=gen,
                workers=workers,
                path=path_obj,
            )
    console.print(str(logz))
    console.print(str(estimators.log_likelihood(model, test, logz)))


def _schedule(num: int) -> torch.Tensor:
    """The Salakhutdinov-Murray schedule shape with ``num`` betas in all."""
    return estimators.schedules.salakhutdinov_murray_scaled(num)


@app.command()
def demo(
    epochs: int = typer.Option(60, min=1),
    hidden: int = typer.Option(16, min=1),
    betas: int = typer.Option(14500, min=2),
    chains: int = typer.Option(100, min=2),
    out: Path = typer.Option(Path("runs/demo"), help="folder for the model and pictures"),
    seed: int = typer.Option(0),
):
    """Train a 64x16 RBM on binarised 8x8 digits with PCD, then compare exact log Z with AIS and
    print the test log-likelihood."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]training[/] RBM 64x{hidden} on scikit-learn digits (threshold-binarised), "
        f"PCD-1, {epochs} epochs"
    )
    model, train_data, test, history = _train(
        "digits", hidden, epochs, SamplerName.pcd, 1, 100, 20, 0.05, 0.5, 1e-4, seed, "threshold"
    )
    ebm.save(model, out / "rbm.safetensors")
    exact = estimators.exact_log_z(model)
    approx = estimators.ais(
        model,
        num_chains=chains,
        betas=_schedule(betas),
        base=ebm.base_rate(model, train_data),
        generator=torch.Generator().manual_seed(seed),
    )
    table = Table(title="log Z and test log-likelihood (nats)")
    for col in ("", "exact", "AIS"):
        table.add_column(col)
    flag = "" if approx.trusted else " (untrusted)"
    table.add_row("log Z", f"{exact.value:.4f}", f"{approx.value:.4f} ± {approx.stderr:.4f}{flag}")
    ll_exact = estimators.log_likelihood(model, test, exact)
    ll_ais = estimators.log_likelihood(model, test, approx)
    table.add_row(
        "test mean log p(v)",
        f"{ll_exact.value:.4f} ± {ll_exact.stderr:.4f}",
        f"{ll_ais.value:.4f} ± {ll_ais.stderr:.4f}{flag}",
    )
    console.print(table)
    if not approx.trusted:
        console.print(f"[bold red]the AIS interval is not to be trusted:[/] {approx.untrusted}")
    console.print(str(exact))
    console.print(str(approx))
    deviation = (approx.value - exact.value) / approx.stderr if approx.stderr > 0 else float("inf")
    console.print(
        f"AIS - exact = {approx.value - exact.value:+.4f} nats ({deviation:+.2f} standard errors)"
    )
    picture = _filters_png(model, out / "filters.png")
    if picture:
        console.print(f"learned filters: {picture}")
    console.print(f"model: {out / 'rbm.safetensors'}; total {time.perf_counter() - start:.1f} s")


def _compare_sampler(name: CompareSampler, temperatures: int):
    """A sampler factory (model -> sampler) for ``ebm compare``."""
    if name == CompareSampler.gibbs:
        return samplers.BlockGibbs
    if name == CompareSampler.metropolis:
        return samplers.Metropolis
    if name == CompareSampler.pt:
        return lambda m: samplers.ParallelTempering(m, num_temperatures=temperatures)
    return samplers.BatchedHMC


@app.command()
def compare(
    model_path: str = typer.Argument(
        ..., help="a saved model (.safetensors), or 'bimodal' for a built-in two-mode RBM"
    ),
    sampler: list[CompareSampler] = typer.Option(
        ["gibbs", "metropolis", "pt"], "--sampler", "-s", help="repeat to compare several"
    ),
    chains: int = typer.Option(8, min=1, help="chains per sampler"),
    sweeps: int = typer.Option(None, min=5, help="budget: model sweeps per chain"),
    seconds: float = typer.Option(None, min=0.001, help="budget: wall seconds per sampler"),
    burn_in: float = typer.Option(0.2, min=0.0, max=0.99, help="fraction of steps discarded"),
    temperatures: int = typer.Option(8, min=2, help="parallel tempering: temperatures"),
    json_out: Path = typer.Option(None, "--json", help="write the results as JSON here"),
    html_out: Path = typer.Option(None, "--html", help="write an HTML report with plots here"),
    seed: int = typer.Option(0),
    statistic: list[str] = typer.Option(
        None,
        "--statistic",
        help="a statistic to diagnose: 'energy' or a block name (its mean; a one-hot block's "
        "mean category index); repeatable; default: the energy and every block",
    ),
    imports: list[str] = IMPORT_OPTION,
):
    """Compare samplers on one model with equal budgets: ESS per second (bulk and tail), split
    R-hat, autocorrelation time, acceptance or swap rates and, where p(v) can be enumerated,
    total variation to it next to the noise floor; then findings in plain words per sampler.
    Exits with status 1 when a sampler's draws should not be trusted. Default budget: 5,000
    sweeps."""
    if sweeps is not None and seconds is not None:
        raise typer.BadParameter("give --sweeps or --seconds, not both")
    if sweeps is None and seconds is None:
        sweeps = 5000
    if model_path == "bimodal":
        model = ebm.models.bimodal_rbm()
    else:
        path = Path(model_path)
        if not path.is_file():
            raise typer.BadParameter(f"no model file {path} (or use 'bimodal')")
        model = load_model(path, imports)
    names = list(dict.fromkeys(sampler))
    with user_input("compare on this model"):
        result = samplers.compare(
            model,
            [_compare_sampler(name, temperatures) for name in names],
            num_chains=chains,
            sweeps=sweeps,
            seconds=seconds,
            burn_in=burn_in,
            names=[n.value for n in names],
            seed=seed,
            statistics=statistic or None,
        )
    result.print(console if console.is_terminal else Console(width=max(console.width, 150)))
    if json_out is not None:
        console.print(f"JSON: {result.to_json(json_out)}")
    if html_out is not None:
        console.print(f"report: {result.report(html_out)}")
    if not all(r.trusted for r in result.results):
        raise typer.Exit(1)


def _filters_png(model, path: Path) -> Path | None:
    """The RBM's weight vectors as 8x8 images (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the diagnostics extra is not installed
        return None
    w = model.factors["dense_v_h"].weight.detach().cpu()
    n = w.shape[1]
    side = int(w.shape[0] ** 0.5)
    if side * side != w.shape[0]:
        return None
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2), squeeze=False)
    limit = float(w.abs().max()) or 1.0
    for j, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if j < n:
            ax.imshow(w[:, j].reshape(side, side).numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle("weights of each hidden unit (red +, blue -)", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
