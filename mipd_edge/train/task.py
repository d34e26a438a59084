"""The training seam: what differs between training a situation student and an interaction
student, behind one interface, so that there is one ``distill`` (``train/distill.py``) for both.

A ``TrainTask`` reads its dataset into the training view (no trace of an unseen verb or
class), and, given the student built for it, prepares its objective (the method's row in
``methods.py`` names the builder), its batches, its training step, its dev evaluation and the
fields its ``config.json`` records. ``SituationTraining`` (``train/distill.py``) and
``InteractionTraining`` (``train/hoi.py``) are the two; a task is added by writing a third and
a row of ``TRAIN_TASKS`` (and of ``data/layouts.py: LAYOUTS`` for where its images are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from torch import nn

from ..context import RunContext
from ..files import PathLike
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .loop import Distributed, Evaluator


@dataclass(frozen=True)
class TrainingInputs:
    """What a student learns from besides its dataset and config."""

    teacher: Optional[PathLike] = None  # kd, mipd: the teacher (a folder or a spec such as open_clip:...)
    rationales: Optional[PathLike] = None  # mipd: the JRG rationales (mipd-edge rationales)
    pairs: Optional[PathLike] = None  # mipd on interactions: the pair situations (mipd-edge hoi-pairs)
    zero_shot: Optional[str] = None  # interactions: the split whose unseen classes training drops
    hold_out_verbs: tuple[int, ...] = ()  # interactions: verb ids also kept out, as if unseen (calibration)
    unlabeled: Optional[PathLike] = None  # situations: a folder of unlabeled images the teacher also teaches on


@dataclass
class TrainingRun:
    """What the loop (``train.loop.train``) trains: the model, inside its step with the
    objective; the batches; the dev evaluation that selects checkpoints; what config.json records."""

    model: nn.Module
    step: nn.Module
    data: Any  # a training set with ``batch(indices, flip)`` and ``len``
    evaluate: Evaluator
    vocabulary: Vocabulary  # the training vocabulary, saved beside the weights
    info: dict[str, Any]
    describe: str  # one log line


class TrainTask(ABC):
    name: str

    @abstractmethod
    def read(self, data_dir: Path, cfg: TrainConfig, encoder: Any, inputs: TrainingInputs) -> Any:
        """The dataset's training view, read before the student is built."""

    @abstractmethod
    def prepare(self, view: Any, model: nn.Module, cfg: TrainConfig, encoder: Any, inputs: TrainingInputs,
                run: RunContext, env: Distributed) -> TrainingRun:
        """Everything the loop needs for ``model`` on the view."""
