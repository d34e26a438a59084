"""A trained model on disk: ``config.json`` + ``weights.safetensors`` (+ ``vocabulary.npz``).

This is what ``distill`` and ``train-teacher`` write and what export, evaluation and the
torch runtime read. No pickle anywhere: weights in safetensors, everything else in JSON.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import MipdEdgeError
from ..files import WEIGHTS_FILE, PathLike, atomic_write_bytes, read_json, write_json
from .student import Student, StudentConfig, build_student

FORMAT = "mipd-edge-model"


def save_model(out: PathLike, model: torch.nn.Module, info: dict[str, Any], weights_name: str = WEIGHTS_FILE) -> None:
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


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: PathLike,
               extra_ok: bool = False) -> None:
    """Weights into a model, every tensor present, of its shape and finite: a damaged file
    is an error, never a model that answers differently. ``extra_ok`` allows tensors the
    model does not have (a teacher's heads, when its student part is loaded alone)."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), [] if extra_ok else sorted(set(state) - expected)
    if missing or unexpected:
        raise MipdEdgeError(f"{path}: the weights do not fit this model (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise MipdEdgeError(f"{path}: tensors with NaN or infinite values, e.g. {broken[:3]}: the file is damaged")
    try:
        model.load_state_dict(state, strict=not extra_ok)
    except RuntimeError as exc:  # a shape that does not fit
        raise MipdEdgeError(f"{path}: the weights do not fit this model ({str(exc).splitlines()[-1].strip()})") from exc


def load_student(model_dir: PathLike, weights_name: str = WEIGHTS_FILE) -> tuple[Student, dict[str, Any]]:
    """A trained student in eval mode, and its config.json. The trained weights hold the
    backbone's, so a pretrained backbone file recorded in the config is not read again (it
    may well be on another machine)."""
    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    model = build_student(replace(StudentConfig.from_json(info["model"]), backbone_weights=None))
    load_state(model, load_weights(model_dir / weights_name), model_dir / weights_name,
               extra_ok=info.get("kind") == "teacher")
    return model.eval(), info
