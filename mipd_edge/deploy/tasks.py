"""What a bundle of each task looks like at run time: the one place a task's graphs differ.

Situation recognition (``gsr``: one situation per image) and human-object interaction
detection (``hoi``: a set of interactions per image) share the encoder and everything
around the graphs. They differ in the decoder graph's inputs and outputs, in what the
manifest must carry beside the common fields, and in which recorded metrics gate INT8.
A runtime, the manifest check and the Predictor read those from here; adding a task adds
an entry to ``TASKS`` (and its predictor class, and its export in ``graphs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import BundleError

DecoderExample = Callable[[np.ndarray, int, int], dict[str, np.ndarray]]


def _situation_decoder_example(memory: np.ndarray, max_roles: int, text_dim: int) -> dict[str, np.ndarray]:
    batch = len(memory)
    return {"memory": memory, "role_emb": np.zeros((batch, max_roles, text_dim), np.float32),
            "verb_emb": np.zeros((batch, text_dim), np.float32),
            "role_mask": np.ones((batch, max_roles), np.float32)}


def _interaction_decoder_example(memory: np.ndarray, max_roles: int, text_dim: int) -> dict[str, np.ndarray]:
    return {"memory": memory}


@dataclass(frozen=True)
class BundleTask:
    """A task's graph contract and manifest needs.

    ``decoder_example`` gives decoder inputs of the right shapes for an encoder's memory
    (for warm-up and timing: the graphs are dense, so their cost does not depend on the
    values); ``gated_metrics`` names the recorded INT8 - FP32 difference and its keys that
    ``auto`` holds to the bundle's accuracy gate."""

    name: str
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]
    decoder_example: DecoderExample
    required_fields: tuple[str, ...]
    gated_metrics: tuple[str, tuple[str, ...]]


GSR = BundleTask(
    name="gsr",
    inputs={"encoder": ["images"], "decoder": ["memory", "role_emb", "verb_emb", "role_mask"]},
    outputs={"encoder": ["memory", "glance"], "decoder": ["nouns", "boxes", "exists"]},
    decoder_example=_situation_decoder_example,
    required_fields=(),
    gated_metrics=("int8_minus_fp32_top1", ("verb", "grnd_value")),
)
# HOI students: the decoder needs no vocabulary input and gives every interaction point (grid cell) at once
HOI = BundleTask(
    name="hoi",
    inputs={"encoder": ["images"], "decoder": ["memory"]},
    outputs={"encoder": ["memory", "glance"],
             "decoder": ["human_boxes", "object_boxes", "objects", "verbs", "interaction"]},
    decoder_example=_interaction_decoder_example,
    required_fields=("hoi_space",),
    gated_metrics=("int8_minus_fp32_map", ("full",)),
)
TASKS: dict[str, BundleTask] = {task.name: task for task in (GSR, HOI)}


def bundle_task(name: str) -> BundleTask:
    if name not in TASKS:
        raise BundleError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["BundleTask", "GSR", "HOI", "TASKS", "bundle_task"]
