"""The student as the bundle's two graphs, per task: what export needs to know of a task.

Both tasks share the encoder graph (images -> memory tokens, glance embedding). A task
supplies its decoder graph, example inputs for tracing, the decoder inputs that check the
exported graphs against torch on real images, the vocabulary the bundle ships and its
manifest fields. ``export.py`` reads these through ``graph_task``; the run-time side of
the same contract (input and output names) is ``deploy.tasks``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import nn

from .data.swig import find_space, read_space
from .deploy.postprocess import SituationDecoder
from .deploy.tasks import GSR, HOI, BundleTask
from .files import PathLike
from .models.student import Student
from .text import TextEncoder
from .vocabulary import Vocabulary


class EncoderGraph(nn.Module):
    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(images)


class SituationDecoderGraph(nn.Module):
    """The decoder without the features only training uses."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, memory, role_emb, verb_emb, role_mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.decode(memory, role_emb, verb_emb, role_mask)[:3]


class InteractionDecoderGraph(nn.Module):
    """An HOI student's decoder: memory in, every cell's interaction outputs out."""

    def __init__(self, model: Student):
        super().__init__()
        self.model = model

    def forward(self, memory) -> tuple[torch.Tensor, ...]:
        return self.model.decode(memory)[:5]


class GraphTask(ABC):
    bundle: BundleTask

    @abstractmethod
    def decoder_graph(self, model: Student) -> nn.Module:
        """The module exported as the decoder graph."""

    @abstractmethod
    def decoder_example(self, model: Student, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Decoder inputs of the right shapes for tracing, beside ``memory``'s batch."""

    @abstractmethod
    def reference_decoder_inputs(self, model: Student, memory: torch.Tensor, glance: torch.Tensor,
                                 vocabulary: Vocabulary) -> dict[str, np.ndarray]:
        """The decoder inputs that check exported graphs on real images."""

    @abstractmethod
    def vocabulary(self, info: Mapping[str, Any], encoder: TextEncoder, data_dir: Path,
                   space: Optional[PathLike]) -> Vocabulary:
        """The vocabulary the bundle ships, embedded by the model's text encoder."""

    def manifest_fields(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """Manifest fields of this task beside the common ones."""
        return {}

    def provenance(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """What the manifest's provenance records of this task's training beside the common record."""
        return {}

    def example_inputs(self, model: Student, batch: int) -> dict[str, tuple[torch.Tensor, ...]]:
        cfg = model.cfg
        memory = torch.zeros(batch, model.tokens, cfg.d_model)
        return {"encoder": (torch.zeros(batch, 3, cfg.image_size, cfg.image_size),),
                "decoder": (memory, *self.decoder_example(model, memory))}


class SituationGraphs(GraphTask):
    bundle = GSR

    def decoder_graph(self, model: Student) -> nn.Module:
        return SituationDecoderGraph(model)

    def decoder_example(self, model: Student, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, cfg = len(memory), model.cfg
        return (torch.zeros(batch, cfg.max_roles, cfg.text_dim), torch.zeros(batch, cfg.text_dim),
                torch.ones(batch, cfg.max_roles))

    def reference_decoder_inputs(self, model: Student, memory: torch.Tensor, glance: torch.Tensor,
                                 vocabulary: Vocabulary) -> dict[str, np.ndarray]:
        """The role queries of each image's top-1 verb under the bundle's vocabulary."""
        decoder = SituationDecoder(vocabulary, float(model.verb_scale()), float(model.noun_scale()),
                                   model.cfg.max_roles)
        roles, verb, mask = decoder.role_inputs([ids[0] for ids in decoder.rank_verbs(glance.numpy())[0]])
        return {"memory": memory.numpy(), "role_emb": roles, "verb_emb": verb, "role_mask": mask}

    def vocabulary(self, info: Mapping[str, Any], encoder: TextEncoder, data_dir: Path,
                   space: Optional[PathLike]) -> Vocabulary:
        return Vocabulary.from_space(read_space(space or find_space(data_dir)), encoder)


class InteractionGraphs(GraphTask):
    bundle = HOI

    def decoder_graph(self, model: Student) -> nn.Module:
        return InteractionDecoderGraph(model)

    def decoder_example(self, model: Student, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return ()

    def reference_decoder_inputs(self, model: Student, memory: torch.Tensor, glance: torch.Tensor,
                                 vocabulary: Vocabulary) -> dict[str, np.ndarray]:
        return {"memory": memory.numpy()}

    def vocabulary(self, info: Mapping[str, Any], encoder: TextEncoder, data_dir: Path,
                   space: Optional[PathLike]) -> Vocabulary:
        """Every verb of the space, unseen ones included, as at test time."""
        from .data.hico import HoiSpace
        from .data.hoi_vocabulary import hoi_vocabulary

        hoi_space = HoiSpace.from_json(info["hoi_space"])
        return hoi_vocabulary(hoi_space, range(1, len(hoi_space.verbs) + 1), encoder)

    def manifest_fields(self, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"hoi_space": info["hoi_space"]}

    def provenance(self, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"zero_shot": info["data"].get("zero_shot")}  # what the benchmark scores as unseen


GRAPH_TASKS: dict[str, GraphTask] = {task.bundle.name: task for task in (SituationGraphs(), InteractionGraphs())}


def graph_task(model: Student) -> GraphTask:
    return GRAPH_TASKS[model.cfg.task]


__all__ = ["EncoderGraph", "GRAPH_TASKS", "GraphTask", "InteractionDecoderGraph", "SituationDecoderGraph",
           "graph_task"]
