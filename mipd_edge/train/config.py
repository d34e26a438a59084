"""Training configuration: one dataclass, optionally read from YAML, overridden from the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

import yaml

from ..errors import MipdEdgeError, reject_unknown_keys
from ..files import PathLike
from .losses import LossWeights

METHODS = ("none", "kd", "mipd")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "mipd"
    student: str = "edge-s"
    model: dict = field(default_factory=dict)  # overrides of the student configuration
    image_size: int = 128
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    flip: bool = True
    text_encoder: str = "minilm"
    loss: LossWeights = field(default_factory=LossWeights)
    align_weight: float = 2.0  # glance -> scene knowledge (mipd) or teacher global feature (kd)
    gaze_align_weight: float = 0.5  # role features -> instance knowledge (mipd) or teacher region features (kd)
    soft_weight: float = 1.0  # KL to the teacher's distribution over the training verbs
    temperature: float = 2.0
    eval_batch_size: int = 64
    # speed only (the same model and losses): NHWC convolutions and a fused AdamW, together 1.1x
    # the training images/s of a 2-core AVX2 CPU (benchmarks/training_speed.py)
    channels_last: bool = True
    fused_optimizer: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MipdEdgeError(f"method must be one of {METHODS}, got {self.method!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TrainConfig":
        reject_unknown_keys(obj, cls, "training config")
        obj = dict(obj)
        if isinstance(obj.get("loss"), dict):
            obj["loss"] = LossWeights(**{**asdict(LossWeights()), **obj["loss"]})
        return cls(**obj)


def load_config(path: Optional[PathLike] = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then explicit overrides (None means 'not given')."""
    cfg = TrainConfig()
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MipdEdgeError(f"cannot read training config {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise MipdEdgeError(f"{path}: a training config is a mapping of keys to values")
        cfg = TrainConfig.from_json({**cfg.to_json(), **raw})
    given = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(given.get("loss"), dict):
        given["loss"] = replace(cfg.loss, **given["loss"])
    return replace(cfg, **given) if given else cfg
