"""Saving and loading models: safetensors weights plus a JSON graph spec, never pickle."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ebm.factors import FACTOR_TYPES
from ebm.graph import Graph
from ebm.model import EnergyModel
from ebm.units import UNIT_TYPES

__all__ = ["save", "load"]

_SPEC_KEY = "boltzkit.graph"
_DIGEST_KEY = "boltzkit.sha256"
_MAX_HEADER = 100 * 1024 * 1024


def save(model: EnergyModel, path: str | Path) -> Path:
    """Write ``model`` to ``path``: its tensors (safetensors) and its graph spec (JSON metadata).

    Loading it back (``load``) runs no code from the file: unit and factor types are looked up by
    name among the registered classes.
    """
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {_SPEC_KEY: json.dumps(model.spec()), _DIGEST_KEY: tensor_digest(tensors)}
    save_file(tensors, str(path), metadata=metadata)
    return path


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
        head = fh.read(8)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise ValueError(
                f"{path}: refusing to load a pickle/zip (torch.save) file: it could run "
                f"code. Only safetensors files written by model.save are loaded."
            )
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        header = fh.read(n)
    try:
        meta = json.loads(header).get("__metadata__", {})
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    if _SPEC_KEY not in meta:
        raise ValueError(
            f"{path}: a safetensors file without a boltzkit graph spec; save models with model.save"
        )


def load(path: str | Path, device=None) -> EnergyModel:
    """Rebuild a model saved by ``model.save``: the graph from its JSON spec, then the weights.

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
    try:
        model = from_spec(spec)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: a malformed graph spec ({type(err).__name__}: {err})") from err
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the tensors do not fit the graph spec ({err})") from err
    return model.to(device) if device is not None else model


def from_spec(spec: dict) -> EnergyModel:
    """Build an (untrained) model from a graph spec produced by ``EnergyModel.spec``."""
    if spec.get("format") != "boltzkit.model/1":
        raise ValueError(f"unknown model format {spec.get('format')!r}")
    g = Graph()
    visible = set(spec.get("visible", []))
    for block in spec["blocks"]:
        cls = UNIT_TYPES.get(block["type"])
        if cls is None:
            raise ValueError(f"unknown unit type {block['type']!r} for block {block['name']!r}")
        g.add_block(block["name"], cls(**block["config"]), visible=block["name"] in visible)
    for factor in spec["factors"]:
        cls = FACTOR_TYPES.get(factor["type"])
        if cls is None:
            raise ValueError(
                f"unknown factor type {factor['type']!r}: register the class with "
                f"ebm.factors.register before loading"
            )
        with torch.random.fork_rng():
            g.add_factor(cls.from_config(factor["config"]))
    return EnergyModel(g)
