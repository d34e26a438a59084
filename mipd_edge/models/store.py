"""A trained model on disk: ``config.json`` + ``weights.safetensors`` (+ ``vocabulary.npz``).

This is what ``distill`` and ``train-teacher`` write and what export, evaluation and the
torch runtime read. No pickle anywhere: weights in safetensors, everything else in JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import MipdEdgeError
from ..files import PathLike, atomic_write_bytes, read_json, write_json
from .student import Student, StudentConfig, build_student

FORMAT = "mipd-edge-model"


def save_model(out: PathLike, model: torch.nn.Module, info: dict[str, Any], weights_name: str = "weights.safetensors") -> None:
    """Write weights, then ``config.json`` last: a directory with a config is complete."""
    out = Path(out)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / weights_name, save(state))
    write_json(out / "config.json", {"format": FORMAT, **info})


def read_model_info(model_dir: PathLike) -> dict[str, Any]:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise MipdEdgeError(f"{model_dir} is not a trained mipd-edge model: no config.json "
                            "(train one with `mipd-edge distill` or `mipd-edge train-teacher`)")
    info = read_json(model_dir / "config.json", "model config")
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise MipdEdgeError(f"{model_dir / 'config.json'} is not a mipd-edge model config")
    return info


def load_weights(path: PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise MipdEdgeError(f"{path}: cannot read weights ({exc})") from exc


def load_student(model_dir: PathLike, weights_name: str = "weights.safetensors") -> tuple[Student, dict[str, Any]]:
    """A trained student in eval mode, and its config.json."""
    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    model = build_student(StudentConfig.from_json(info["model"]))
    state = load_weights(model_dir / weights_name)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise MipdEdgeError(f"{model_dir / weights_name}: missing tensors for this model, e.g. {missing[:3]}")
    return model.eval(), info
