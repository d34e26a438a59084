"""From network outputs to ``Situation`` objects: glance, then gaze, matched in numpy.

The two graphs of a student (encoder and decoder) know nothing of words. This module
ranks verbs by cosine between the glance embedding and the vocabulary's verb embeddings,
builds the decoder's role queries from the chosen verbs' role embeddings, and names each
role's noun by cosine against the noun embeddings. The same code serves torch evaluation
and every deployed runtime, and a vocabulary edit is visible on the next call.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .preprocess import Letterbox
from .situation import RoleValue, Situation, VerbCandidate
from .vocabulary import Vocabulary

DecodeFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def role_inputs(vocabulary: Vocabulary, verbs: Sequence[str], max_roles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder inputs for each verb: role embeddings (n, R, D), verb embedding (n, D), mask (n, R)."""
    names, verb_emb = vocabulary.verb_matrix()
    index = {v: i for i, v in enumerate(names)}
    roles = np.zeros((len(verbs), max_roles, verb_emb.shape[1]), np.float32)
    mask = np.zeros((len(verbs), max_roles), np.float32)
    for i, verb in enumerate(verbs):
        r = vocabulary.role_matrix(verb)[1][:max_roles]
        roles[i, : len(r)] = r
        mask[i, : len(r)] = 1.0
    return roles, verb_emb[[index[v] for v in verbs]], mask


class SituationDecoder:
    """Vocabulary matching and role-query building around the two graphs."""

    def __init__(self, vocabulary: Vocabulary, verb_scale: float, noun_scale: float, max_roles: int = 6,
                 top_k: int = 5, exists_threshold: float = 0.5):
        self.vocabulary = vocabulary
        self.verb_scale, self.noun_scale = float(verb_scale), float(noun_scale)
        self.max_roles, self.top_k, self.exists_threshold = max_roles, top_k, exists_threshold
        self.exists_logit = float(np.log(exists_threshold / (1 - exists_threshold)))  # sigmoid(x) >= t

    def rank_verbs(self, glance: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
        """Top-k verb names per image and their probabilities over the whole vocabulary."""
        names, emb = self.vocabulary.verb_matrix()
        probs = softmax(self.verb_scale * (glance @ emb.T))
        k = min(self.top_k, len(names))
        idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[names[j] for j in row] for row in idx], np.take_along_axis(probs, idx, axis=1)

    def role_inputs(self, verbs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return role_inputs(self.vocabulary, verbs, self.max_roles)

    def name_roles(self, verb: str, nouns: np.ndarray, boxes: np.ndarray, exists: np.ndarray,
                   letterbox: Letterbox) -> dict[str, RoleValue]:
        """One verb's decoder outputs -> role -> RoleValue with box in image pixels."""
        role_names = list(self.vocabulary.frame(verb).roles)[: self.max_roles]
        noun_ids, noun_emb = self.vocabulary.noun_matrix()
        n = len(role_names)
        logits = self.noun_scale * (nouns[:n] @ noun_emb.T)
        best = logits.argmax(axis=1)
        # the winner's softmax probability, without normalising the whole row
        scores = 1.0 / np.exp(logits - logits[np.arange(n), best][:, None]).sum(axis=1)
        pixel = letterbox.boxes_to_image(boxes[:n]).tolist()
        present = (exists[:n] >= self.exists_logit).tolist()
        out = {}
        for i, role in enumerate(role_names):
            noun = noun_ids[best[i]]
            out[role] = RoleValue(noun=noun, label=self.vocabulary.label(noun), score=float(scores[i]),
                                  box=pixel[i] if present[i] else None)
        return out


def recognize(memory: np.ndarray, glance: np.ndarray, decode: DecodeFn, letterboxes: Sequence[Letterbox],
              decoder: SituationDecoder, roles_for: str = "top1",
              gold_verbs: Optional[Sequence[str]] = None) -> list[Situation]:
    """Glance-then-gaze on the encoder outputs of a batch of images.

    ``roles_for="top1"`` decodes roles for the best verb only (deployment); ``"topk"``
    decodes them for every candidate (the top-5 metric needs them). ``gold_verbs`` adds
    the roles predicted for a given verb (``gt_verb_roles``, for evaluation).
    """
    ranked, probs = decoder.rank_verbs(glance)
    per_image = [names if roles_for == "topk" else names[:1] for names in ranked]
    if gold_verbs is not None:
        per_image = [names + [gold] for names, gold in zip(per_image, gold_verbs)]
    owners = np.repeat(np.arange(len(per_image)), [len(v) for v in per_image])
    flat = [v for names in per_image for v in names]
    roles, verb_emb, mask = decoder.role_inputs(flat)
    nouns, boxes, exists = decode(np.ascontiguousarray(memory[owners]), roles, verb_emb, mask)
    out, at = [], 0
    for i, names in enumerate(ranked):
        decoded = []
        for verb in per_image[i]:
            decoded.append(decoder.name_roles(verb, nouns[at], boxes[at], exists[at], letterboxes[i]))
            at += 1
        with_roles = len(per_image[i]) - (gold_verbs is not None)
        candidates = tuple(VerbCandidate(v, float(p), decoded[j] if j < with_roles else {})
                           for j, (v, p) in enumerate(zip(names, probs[i])))
        out.append(Situation(candidates, decoded[-1] if gold_verbs is not None else None))
    return out
