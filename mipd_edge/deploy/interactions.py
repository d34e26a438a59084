"""From an HOI student's interaction points to scored (human, verb, object) detections.

Each slot (a grid cell of the interaction map) gives a human box, an object box, an object
embedding, a verb embedding and an interaction logit. Objects and verbs are matched by
cosine against the vocabulary's text embeddings (so unseen verbs score from their
descriptions), and a detection's score is P(interaction) x P(object) x P(verb) for the
slot's best object and every verb. With an HOI space, only (verb, object) pairs that are
classes of it are kept, as HICO-DET's evaluation expects. The same code serves torch
evaluation and every deployed runtime.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from ..data.hico import PERSON, HoiSpace
from ..data.hoi_vocabulary import category_of, object_matrix, object_noun
from ..situation import Interactions, RoleValue, Situation, VerbCandidate
from ..vocabulary import Vocabulary
from .postprocess import softmax
from .preprocess import Letterbox

MAX_DETECTIONS = 100  # per image, as the HICO-DET code bases keep


class InteractionDecoder:
    def __init__(self, vocabulary: Vocabulary, verb_scale: float, noun_scale: float,
                 space: Optional[HoiSpace] = None, restrict: bool = True, max_detections: int = MAX_DETECTIONS,
                 verb_bias: Optional[Mapping[str, float]] = None):
        """With ``space``, verbs get their ids in it; ``restrict`` then keeps only its
        classes (evaluation), otherwise every verb-object pair stays (open vocabulary:
        verbs added at run time have no id and are reported by name). ``verb_bias`` is
        subtracted from the named verbs' logits: a calibration of the training verbs against
        the others (``train/hoi_calibration.py``)."""
        self.vocabulary, self.space, self.restrict = vocabulary, space, restrict
        self.verb_bias = dict(verb_bias or {})
        self.verb_scale, self.noun_scale, self.max_detections = float(verb_scale), float(noun_scale), max_detections
        self._version: Optional[int] = None

    def _tables(self) -> None:
        """Scaled text matrices (and the space's class mask), rebuilt when the vocabulary changes."""
        if self._version == self.vocabulary.version:
            return
        self.verbs, verb_emb = self.vocabulary.verb_matrix()
        self.objects, object_emb = object_matrix(self.vocabulary)
        self.verb_t = np.ascontiguousarray(self.verb_scale * verb_emb.T)
        self.bias = np.array([self.verb_bias.get(v, 0.0) for v in self.verbs], np.float32) if self.verb_bias else None
        self.object_t = np.ascontiguousarray(self.noun_scale * object_emb.T)
        self.labels = [self.vocabulary.label(n) for n in self.objects]
        self.verb_ids = None
        if self.space is not None:
            ids = {v: i + 1 for i, v in enumerate(self.space.verbs)}
            self.verb_ids = [ids.get(v) for v in self.verbs]
            self.valid = np.array([[vid is not None and self.space.class_of(vid, category_of(o)) is not None
                                    for o in self.objects] for vid in self.verb_ids], bool)
        self._version = self.vocabulary.version

    def detections(self, outputs: Sequence[np.ndarray], letterbox: Letterbox, threshold: float = 0.0,
                   restrict: Optional[bool] = None) -> list[dict]:
        """One image's slots (human boxes, object boxes, object and verb embeddings,
        interaction logits) -> detections, best first: pixel boxes, object category id,
        verb (id in the space when there is one, else its name), verb name and score."""
        self._tables()
        human, obj, objects, verbs, interaction = outputs
        p_obj = softmax(objects @ self.object_t)
        best = p_obj.argmax(1)
        p_interaction = 0.5 * (1 + np.tanh(0.5 * interaction))  # the sigmoid, without overflow at masked cells
        verb_logits = verbs @ self.verb_t if self.bias is None else verbs @ self.verb_t - self.bias
        scores = (p_interaction * p_obj[np.arange(len(best)), best])[:, None] * softmax(verb_logits)
        if self.space is not None and (self.restrict if restrict is None else restrict):
            scores = scores * self.valid[:, best].T
        flat = np.argsort(-scores, axis=None, kind="stable")[: self.max_detections]
        out = []
        for slot, v in zip(*np.unravel_index(flat, scores.shape)):
            score = float(scores[slot, v])
            if score <= threshold:
                break
            name = self.verbs[v]
            out.append({"human_box": letterbox.box_to_image(human[slot].tolist()),
                        "object_box": letterbox.box_to_image(obj[slot].tolist()),
                        "object": category_of(self.objects[best[slot]]), "object_name": self.labels[best[slot]],
                        "verb": self.verb_ids[v] if self.verb_ids and self.verb_ids[v] else name, "verb_name": name,
                        "score": score, "slot": int(slot)})
        return out


def as_situations(detections: Sequence[dict], threshold: float = 0.3) -> Interactions:
    """Detections above ``threshold`` as situations (verb; agent and item with boxes), one
    per interaction, each slot at most once (its best verb)."""
    out, slots = Interactions(), set()
    for d in detections:
        if d["score"] < threshold:
            break
        if d["slot"] in slots:
            continue
        slots.add(d["slot"])
        roles = {"agent": RoleValue(object_noun(PERSON), "person", 1.0, d["human_box"]),
                 "item": RoleValue(object_noun(d["object"]), d["object_name"], d["score"], d["object_box"])}
        out.append(Situation((VerbCandidate(d["verb_name"], d["score"], roles),)))
    return out
