"""Saving and loading models: safetensors weights plus a JSON graph spec, never pickle."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ebm.factors import FACTOR_TYPES
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.units import UNIT_TYPES

__all__ = ["save", "load", "UnknownTypeError"]


class UnknownTypeError(ValueError):
    """A saved model names a unit or factor type that is not registered in this process."""


_SPEC_KEY = "boltzkit.graph"
_DIGEST_KEY = "boltzkit.sha256"
_FINGERPRINT_KEY = "boltzkit.fingerprint"
_STATE_PREFIX = "__fingerprint__."
_MAX_HEADER = 100 * 1024 * 1024


def save(model: EnergyModel, path: str | Path) -> Path:
    """Write ``model`` to ``path``: its tensors (safetensors) and its graph spec (JSON metadata).

    Loading it back (``load``) runs no code from the file: unit and factor types are looked up by
    name among the registered classes. Refuses (ValueError) a model with an unregistered unit or
    factor type. Saved with it: a SHA-256 digest of the tensors and a fingerprint, the energies of
    three fixed random states (stored too), which ``load`` recomputes: a model that would load
    different (a factor whose ``config()`` misses an argument) is refused, never returned.
    """
    path = Path(path)
    _check_registered(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    states = _fingerprint_states(model)
    energies = _energies(model, states)
    tensors.update({_STATE_PREFIX + b: x for b, x in states.items()})
    metadata = {
        _SPEC_KEY: json.dumps(model.spec()),
        _DIGEST_KEY: tensor_digest(tensors),
        _FINGERPRINT_KEY: json.dumps(energies),
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def _check_registered(model: EnergyModel) -> None:
    """Refuse to save a model that ``load`` could not rebuild: every unit and factor type must
    be the class registered under its name."""
    for b, units in model.units.items():
        if UNIT_TYPES.get(type(units).__name__) is not type(units):
            raise ValueError(
                f"block {b!r}: unit type {type(units).__name__} is not registered "
                f"(ebm.units.UNIT_TYPES), so a saved model could not be loaded"
            )
    for name, factor in model.factors.items():
        if FACTOR_TYPES.get(type(factor).__name__) is not type(factor):
            raise ValueError(
                f"factor {name!r}: {type(factor).__name__} is not registered; decorate the class "
                f"with @ebm.factors.register so that ebm.load can rebuild it"
            )


def _fingerprint_states(model: EnergyModel, num: int = 3) -> dict[str, torch.Tensor]:
    """A few random states of every block (a fixed seed), saved with the model: their energies
    are the model's fingerprint."""
    generator = torch.Generator().manual_seed(20261204)
    with torch.no_grad():
        return {
            b: u.random(num, generator, device="cpu", dtype=torch.float64).contiguous()
            for b, u in model.units.items()
        }


def _energies(model: EnergyModel, states: dict[str, torch.Tensor]) -> list[float]:
    """E(x) of ``states`` on a float64 CPU copy of the model."""
    m = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    with torch.no_grad():
        return [float(e) for e in m.energy(states)]


def _check_fingerprint(path: Path, model: EnergyModel, states, saved: list[float]) -> None:
    """Refuse a model that loads different from the one saved: the energies of the saved states
    must agree to 1e-9 relative (both non-finite counts as agreeing when equal)."""
    got = _energies(model, states)
    for i, (a, b) in enumerate(zip(saved, got, strict=True)):
        same = a == b or (math.isfinite(a) and abs(a - b) <= 1e-9 * (1 + abs(a)))
        if not same:
            raise ValueError(
                f"{path}: the loaded model is not the one saved: its energy at fingerprint state "
                f"{i} is {b!r}, saved {a!r}. A factor's config() likely misses a constructor "
                f"argument; give the factor a config() that captures every argument"
            )


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order: saved with a model
    so that a file whose tensors were altered or damaged is refused on load."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file, pickles above all, before parsing it."""
    with open(path, "rb") as fh:
        head = fh.read(9)
        # a safetensors file: 8 bytes of header length, then the JSON header, which opens with {
        # (a header length may well begin with byte 0x80, as a pickle does: the { tells them apart)
        if head[:2] == b"PK" or (head[:1] == b"\x80" and head[8:9] != b"{"):
            raise ValueError(
                f"{path}: refusing to load a pickle/zip (torch.save) file: it could run "
                f"code. Only safetensors files written by ebm.save are loaded."
            )
        if len(head) < 9:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head[:8])
        if not 2 <= n <= _MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        header = head[8:] + fh.read(n - 1)
    try:
        meta = json.loads(header).get("__metadata__", {})
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    if _SPEC_KEY not in meta:
        raise ValueError(
            f"{path}: a safetensors file without a boltzkit graph spec; save models with ebm.save"
        )


def load(path: str | Path, device=None) -> EnergyModel:
    """Rebuild a model saved by ``ebm.save``: the graph from its JSON spec, then the weights.

    Custom factor classes must be registered (``ebm.factors.register``) before loading.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path}: a damaged safetensors file ({err})") from err
    digest = metadata.get(_DIGEST_KEY)
    if digest is not None and digest != tensor_digest(tensors):
        raise ValueError(
            f"{path}: the tensors do not match the digest saved with them: the file was "
            f"altered or damaged after it was written"
        )
    try:
        spec = json.loads(metadata[_SPEC_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the graph spec is not valid JSON ({err})") from err
    states = {k[len(_STATE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_STATE_PREFIX)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(_STATE_PREFIX)}
    model = rebuild(spec, tensors, path)
    if _FINGERPRINT_KEY in metadata:
        _check_fingerprint(path, model, states, json.loads(metadata[_FINGERPRINT_KEY]))
    return model.to(device) if device is not None else model


def rebuild(
    spec: dict, tensors: dict[str, torch.Tensor], where: str | Path = "model"
) -> EnergyModel:
    """The model a graph spec and its parameter tensors describe, in the tensors' dtype: the
    shapes are checked against the spec before any parameter is allocated. ValueError, naming
    ``where``, for a malformed spec or tensors that do not fit it."""
    try:
        _check_shapes(where, from_spec(spec, shapes_only=True), tensors)
        model = from_spec(spec)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{where}: a malformed graph spec ({type(err).__name__}: {err})") from err
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{where}: the tensors do not fit the graph spec ({err})") from err
    return model


def _check_shapes(
    path: Path | str, skeleton: EnergyModel, tensors: dict[str, torch.Tensor]
) -> None:
    """Refuse, before any parameter is allocated, a spec whose parameters do not match the stored
    tensors (names and shapes): a small file cannot make ``load`` build a huge model."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{path}: the graph spec and the stored tensors disagree: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    for k, shape in expected.items():
        if stored[k] != shape:
            raise ValueError(
                f"{path}: the graph spec gives {k} the shape {shape}, the file stores "
                f"{stored[k]}: refusing the file"
            )


def from_spec(spec: dict, shapes_only: bool = False) -> EnergyModel:
    """Build an (untrained) model from a graph spec produced by ``EnergyModel.spec``.

    ``shapes_only``: the factors' parameters are made on the meta device (no memory, no
    initialisation) and the graph does not probe them: a model to read parameter shapes from."""
    if spec.get("format") != "boltzkit.model/1":
        raise ValueError(f"unknown model format {spec.get('format')!r}")
    g = Graph()
    g._shapes_only = shapes_only
    visible = set(spec.get("visible", []))
    for block in spec["blocks"]:
        cls = UNIT_TYPES.get(block["type"])
        if cls is None:
            raise UnknownTypeError(
                f"unknown unit type {block['type']!r} for block {block['name']!r}"
            )
        g.add_block(block["name"], cls(**block["config"]), visible=block["name"] in visible)
    for factor in spec["factors"]:
        cls = FACTOR_TYPES.get(factor["type"])
        if cls is None:
            raise UnknownTypeError(
                f"unknown factor type {factor['type']!r}: register the class with "
                f"ebm.factors.register before loading"
            )
        with torch.random.fork_rng():
            g.add_factor(cls.from_config(factor["config"]))
    return EnergyModel(g)
