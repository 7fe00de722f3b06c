"""Checkpoints for long runs: safetensors tensors plus JSON metadata, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

__all__ = [
    "fingerprint",
    "load_checkpoint",
    "load_optimizer_tensors",
    "optimizer_tensors",
    "save_checkpoint",
]


def fingerprint(model: torch.nn.Module, *extra: Tensor) -> str:
    """A hash of the model's parameters and buffers (and ``extra`` tensors): a checkpoint made
    for one model and set-up cannot be resumed with another."""
    h = hashlib.sha256()
    for name, t in list(model.state_dict().items()) + [(str(i), e) for i, e in enumerate(extra)]:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Write ``tensors`` and ``meta`` (JSON) to ``path`` via a temporary file and a rename, so an
    interruption never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={"boltzkit.checkpoint": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """The tensors and metadata of a checkpoint written by ``save_checkpoint`` (no pickle)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            if "boltzkit.checkpoint" not in meta:
                raise ValueError(f"{path} is not a boltzkit checkpoint")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise ValueError(
            f"{path}: a damaged checkpoint ({err}); delete it or pass another file"
        ) from err
    return tensors, json.loads(meta["boltzkit.checkpoint"])


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The optimiser's per-parameter state (momentum buffers) as tensors named
    ``optim.{parameter index}.{name}``, for a checkpoint."""
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                out[f"optim.{i}.{k}"] = v
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    """Put back into ``optimizer`` the state that ``optimizer_tensors`` saved among ``tensors``."""
    state = optimizer.state_dict()
    for i in {i for g in state["param_groups"] for i in g["params"]}:
        prefix = f"optim.{i}."
        found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            state["state"][i] = found
    optimizer.load_state_dict(state)
