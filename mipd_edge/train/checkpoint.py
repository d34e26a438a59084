"""Training checkpoints: one safetensors file per checkpoint, written atomically.

Tensors (model weights, optimizer moments, the torch RNG state) go into the safetensors
body; everything else (epoch, step, best score, optimizer hyper-parameters) into its JSON
metadata. A single file replaced with ``os.replace`` means a kill at any moment leaves
the previous checkpoint intact, and resuming restores every bit the next epoch depends on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ..errors import MipdEdgeError
from ..files import PathLike, atomic_write_bytes

TENSOR = "__tensor__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict / list by a reference, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {TENSOR: key}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten(k, f"{prefix}.k{i}", tensors), flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and TENSOR in obj:
        return tensors[obj[TENSOR]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: PathLike, model_state: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    flat = flatten(state, "state", tensors)
    atomic_write_bytes(path, save(tensors, metadata={"state": json.dumps(flat)}))


def load_checkpoint(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {})
        state = unflatten(json.loads(metadata["state"]), tensors)
    except (OSError, SafetensorError, ValueError, KeyError) as exc:
        raise MipdEdgeError(f"{path}: not a readable training checkpoint ({exc})") from exc
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise MipdEdgeError(f"{path}: NaN or infinite values in {broken[:3]}: the checkpoint is damaged; "
                            "delete it to start over")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return model, state
