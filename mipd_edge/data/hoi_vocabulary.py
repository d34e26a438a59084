"""The vocabulary of an HOI space: verbs as (agent, item) frames, object categories as
nouns. Training, export and run-time decoding all read HOI classes through it."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..situation import Frame, Noun
from ..vocabulary import Vocabulary
from .hico import HoiSpace
from .swig import SituSpace

ROLES = ("agent", "item")


def object_noun(category: int) -> str:
    """The vocabulary's noun id of an object category."""
    return f"o{category}"


def category_of(noun: str) -> int:
    return int(noun[1:])


def hoi_situation_space(space: HoiSpace) -> SituSpace:
    """Verbs as (agent, item) frames described by their definitions, objects as nouns."""
    frames = {}
    for verb in space.verbs:
        frames[verb] = Frame(verb=verb, roles=ROLES, framenet=verb.capitalize(),
                             role_definitions={"agent": f"the person who is {verb}",
                                               "item": f"what the person is {verb}"},
                             definition=space.definitions.get(verb) or f"a person {verb} an object")
    nouns = {object_noun(c): Noun(object_noun(c), (name,), f"a {name}") for c, name in space.objects.items()}
    return SituSpace(frames, nouns)


def object_matrix(vocabulary: Vocabulary) -> tuple[list[str], np.ndarray]:
    """The vocabulary's objects and their embeddings: its nouns without the empty one."""
    names, emb = vocabulary.noun_matrix()
    keep = [i for i, n in enumerate(names) if n]
    return [names[i] for i in keep], emb[keep]


def hoi_vocabulary(space: HoiSpace, verb_ids: Sequence[int], encoder) -> Vocabulary:
    """The student's vocabulary: the given verbs (as agent-item frames) and every object."""
    situations = hoi_situation_space(space)
    return Vocabulary({space.verbs[v - 1]: situations.frames[space.verbs[v - 1]] for v in verb_ids},
                      situations.nouns, encoder)
