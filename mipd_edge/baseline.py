"""A reference predictor that never looks at the pixels: training-set frequencies only.

It predicts the five most frequent training verbs, and for each verb's roles the most
frequent training noun and the mean training box (scaled to the image), or no box when
most training examples have none. Every learnt model must beat it; it is also the honest
floor that shows what the metrics give for free on a dataset.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Mapping, Optional

import numpy as np

from .data.swig import Annotation, SituSpace
from .situation import RoleValue, Situation, VerbCandidate


class FrequencyBaseline:
    name = "frequency prior (ignores the image)"

    def __init__(self, train: Mapping[str, Annotation], space: SituSpace, top_k: int = 5):
        self.space = space
        verb_counts = Counter(a.verb for a in train.values())
        total = max(1, sum(verb_counts.values()))
        ranked = sorted(verb_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        self.top_verbs = [(v, c / total) for v, c in ranked]
        nouns: dict[tuple, Counter] = defaultdict(Counter)
        boxes: dict[tuple, list] = defaultdict(list)
        for a in train.values():
            for role in space.frames[a.verb].roles:
                for key in ((a.verb, role), (None, role)):
                    nouns[key].update(f[role] for f in a.frames)
                    b = a.boxes.get(role)
                    boxes[key].append(None if b is None else
                                      np.array(b) / [a.width, a.height, a.width, a.height])
        self.nouns = {k: c.most_common(1)[0][0] for k, c in nouns.items()}
        self.boxes = {k: self._mean_box(v) for k, v in boxes.items()}

    @staticmethod
    def _mean_box(rel: list) -> Optional[np.ndarray]:
        present = [b for b in rel if b is not None]
        return np.mean(present, axis=0) if len(present) * 2 >= len(rel) else None

    def roles(self, verb: str, width: int, height: int) -> dict[str, RoleValue]:
        out = {}
        for role in self.space.frames[verb].roles:
            key = (verb, role) if (verb, role) in self.nouns else (None, role)
            noun = self.nouns.get(key, "")
            rel = self.boxes.get(key)
            box = None if rel is None else [float(v) for v in rel * [width, height, width, height]]
            label = self.space.nouns[noun].label if noun in self.space.nouns else noun
            out[role] = RoleValue(noun=noun, label=label, score=1.0, box=box)
        return out

    def predict(self, width: int, height: int, gold_verb: Optional[str] = None) -> Situation:
        candidates = tuple(VerbCandidate(v, s, self.roles(v, width, height)) for v, s in self.top_verbs)
        gt = self.roles(gold_verb, width, height) if gold_verb is not None else None
        return Situation(candidates, gt)

    def predict_dataset(self, annotations: Mapping[str, Annotation]) -> dict[str, dict]:
        """The predictions format of ``mipd_edge.metrics``, with ``gt_verb_roles``."""
        return {name: self.predict(a.width, a.height, a.verb).to_json() for name, a in annotations.items()}
