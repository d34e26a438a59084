"""The named research rows of ``--method mipd``: each is a set of training-config overrides,
mostly ``MipdConfig`` switches, which the ablations train side by side.

A user sets the same switches in a training config file (``mipd:`` section); these names
exist only so that the ablations' results files and the documentation can refer to a row.
"""

from __future__ import annotations

from typing import Any

from mipd_edge.errors import MipdEdgeError
from mipd_edge.train.config import LossWeights, MipdConfig

from .authors import AUTHORS

# the authors' GSR losses (caicch/Ov-GSR, models/ovgsr.py): label smoothing 0.3 on verbs and
# 0.2 on nouns, a noun loss summed over the 3 annotators, box L1 5, GIoU 5, box-exists 5
AUTHORS_LOSS = LossWeights(noun=3.0, box_l1=5.0, box_giou=5.0, exists=5.0, verb_smoothing=0.3, noun_smoothing=0.2)

MIPD_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "glimpse-positive": {"mipd": MipdConfig(instance=False, negatives="none")},
    "glimpse": {"mipd": MipdConfig(instance=False)},
    "gaze-positive": {"mipd": MipdConfig(scene=False, negatives="none")},
    "gaze": {"mipd": MipdConfig(scene=False)},
    "no-scene-prompt": {"mipd": MipdConfig(scene_prompt=False)},
    "no-instance-prompt": {"mipd": MipdConfig(instance_prompt=False)},
    "random-negatives": {"mipd": MipdConfig(negatives="random")},
    "anchored": {"mipd": MipdConfig(knowledge="anchored")},
    "with-teacher-features": {"mipd": MipdConfig(teacher_features=True)},
    "scene-head": {"mipd": MipdConfig(scene_head=True)},
    # the glance distilled from the teacher's own feature (KD's terms), the roles from instance knowledge
    "teacher-glance": {"mipd": MipdConfig(scene=False, teacher_features=True)},
    # instance knowledge pulls the noun embeddings directly, with no projection head
    "gaze-on-nouns": {"mipd": MipdConfig(instance_head=False)},
    # the authors' formulation with their GSR losses
    "authors": {"method": AUTHORS.name, "loss": AUTHORS_LOSS},
    # their knowledge and distillation with our GSR losses: what the formulation does apart from the loss recipe
    "authors-knowledge": {"method": AUTHORS.name},
    # HOI: distillation at every human-object pair of a training image, labelled or not
    "all-pairs": {"mipd": MipdConfig(pairs="all")},
    # the authors' loss shapes (cosine hinge on negatives, L1 distillation) on our knowledge
    "authors-losses": {"mipd": MipdConfig(losses="authors")},
    # no distillation for the first quarter of training, full weight from half way: detection settles first
    "ramped": {"distill_from": 0.25, "distill_full": 0.5},
}


def variant_overrides(name: str) -> dict[str, Any]:
    """The training-config overrides of a named row."""
    if name not in MIPD_VARIANTS:
        raise MipdEdgeError(f"unknown mipd variant {name!r}; choose from {', '.join(MIPD_VARIANTS)}")
    return dict(MIPD_VARIANTS[name])
