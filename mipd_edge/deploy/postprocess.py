"""From network outputs to ``Situation`` objects: glance, then gaze, matched in numpy.

The two graphs of a student (encoder and decoder) know nothing of words. This module
ranks verbs by cosine between the glance embedding and the vocabulary's verb embeddings,
builds the decoder's role queries from the chosen verbs' role embeddings, and names each
role's noun by cosine against the noun embeddings. The same code serves torch evaluation
and every deployed runtime, and a vocabulary edit is visible on the next call.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..situation import RoleValue, Situation, VerbCandidate
from ..vocabulary import Vocabulary
from .preprocess import Letterbox

DecodeFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def role_inputs(
    vocabulary: Vocabulary, verbs: Sequence[str], max_roles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


class VocabularyTables:
    """The vocabulary as the arrays matching needs, rebuilt only when the vocabulary changes.

    Next to a 2 ms INT8 model the matching must cost tens of microseconds: scaled,
    transposed embedding matrices and per-verb role queries are made once per vocabulary
    version instead of on every call."""

    def __init__(self, vocabulary: Vocabulary, verb_scale: float, noun_scale: float, max_roles: int):
        with vocabulary.lock:  # a consistent snapshot while other threads may edit
            self._build(vocabulary, verb_scale, noun_scale, max_roles)

    def _build(self, vocabulary: Vocabulary, verb_scale: float, noun_scale: float, max_roles: int) -> None:
        self.version = vocabulary.version
        self.verbs, verb_emb = vocabulary.verb_matrix()
        self.verb_index = {v: i for i, v in enumerate(self.verbs)}
        self.verb_emb = verb_emb
        self.verb_logits = np.ascontiguousarray(verb_scale * verb_emb.T)
        self.nouns, noun_emb = vocabulary.noun_matrix()
        self.noun_labels = [vocabulary.label(n) for n in self.nouns]
        self.noun_logits = np.ascontiguousarray(noun_scale * noun_emb.T)
        roles, mask = role_inputs(vocabulary, self.verbs, max_roles)[::2]
        self.role_emb, self.role_mask = roles, mask
        # one verb's decoder inputs as views, ready: slicing three arrays per call cost 15 us
        self.role_views = [(roles[v:v + 1], verb_emb[v:v + 1], mask[v:v + 1]) for v in range(len(self.verbs))]
        self.role_names = [vocabulary.frame(v).roles[:max_roles] for v in self.verbs]


class SituationDecoder:
    """Vocabulary matching and role-query building around the two graphs."""

    def __init__(self, vocabulary: Vocabulary, verb_scale: float, noun_scale: float, max_roles: int = 6,
                 top_k: int = 5, exists_threshold: float = 0.5):
        self.vocabulary = vocabulary
        self.verb_scale, self.noun_scale = float(verb_scale), float(noun_scale)
        self.max_roles, self.top_k, self.exists_threshold = max_roles, top_k, exists_threshold
        self.exists_logit = float(np.log(exists_threshold / (1 - exists_threshold)))  # sigmoid(x) >= t
        self._tables: Optional[VocabularyTables] = None
        self._pinned = False
        self._pinned_copy: Optional[SituationDecoder] = None

    @property
    def tables(self) -> VocabularyTables:
        tables = self._tables
        if not self._pinned and (tables is None or tables.version != self.vocabulary.version):
            tables = self._tables = VocabularyTables(self.vocabulary, self.verb_scale, self.noun_scale,
                                                     self.max_roles)
        return tables

    def pinned(self) -> "SituationDecoder":
        """This decoder with today's tables fixed: one call decodes against one version of the
        vocabulary even when another thread edits it meanwhile.

        The pinned copy is made once per version of the tables and shared by every call until
        the vocabulary changes (it is never modified, so threads may share it): a copy per
        call cost about 30 us, which is 1.5% of a 2 ms INT8 inference."""
        tables, pinned = self.tables, self._pinned_copy
        if pinned is None or pinned._tables is not tables:
            pinned = copy.copy(self)
            pinned._tables, pinned._pinned, pinned._pinned_copy = tables, True, None
            self._pinned_copy = pinned
        return pinned

    def rank_verbs(self, glance: np.ndarray) -> tuple[list[list[int]], list[list[float]]]:
        """Top-k verb indices (into ``tables.verbs``) per image and their probabilities over the
        whole vocabulary.

        After the matrix product it is plain Python: for one image and a vocabulary of
        hundreds of verbs that costs less than numpy's sort and gather calls (and a full
        sort less than ``heapq.nlargest``)."""
        logits = (glance @ self.tables.verb_logits).tolist()
        ranked, probs = [], []
        for row in logits:
            top = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:self.top_k]
            best = row[top[0]]
            total = sum([math.exp(v - best) for v in row])
            ranked.append(top)
            probs.append([math.exp(row[j] - best) / total for j in top])
        return ranked, probs

    def role_inputs(self, verbs: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoder inputs for verb indices: role embeddings (n, R, D), verb embedding (n, D), mask (n, R)."""
        t = self.tables
        if len(verbs) == 1:  # the deployment case: views, no gather
            return t.role_views[verbs[0]]
        return t.role_emb[verbs], t.verb_emb[verbs], t.role_mask[verbs]

    def match_nouns(self, nouns: np.ndarray) -> tuple[list[list[int]], list[list[float]]]:
        """Per verb and role, the best noun's index (into ``tables.nouns``) and its probability."""
        logits = nouns @ self.tables.noun_logits  # (n, R, nouns)
        best = logits.argmax(axis=2).tolist()
        # the winner's softmax probability is 1 / sum(exp(logit - best logit))
        totals = np.exp(logits - logits.max(axis=2, keepdims=True)).sum(axis=2).tolist()
        return best, [[1.0 / t for t in row] for row in totals]

    def name_roles(self, verbs: Sequence[int], nouns, boxes: np.ndarray, exists: np.ndarray,
                   letterboxes: Sequence[Letterbox]) -> list[dict[str, RoleValue]]:
        """Decoder outputs of n verbs -> per verb, role -> RoleValue with its box in image pixels."""
        t, threshold = self.tables, self.exists_logit
        best, probs = self.match_nouns(nouns)
        out = []
        for verb, letterbox, ids, scores, xywh, exist in zip(verbs, letterboxes, best, probs, boxes.tolist(),
                                                              exists.tolist()):
            # a handful of boxes: plain Python beats numpy's per-call cost here (and positional
            # arguments keyword ones, right after an inference)
            out.append({role: RoleValue(t.nouns[ids[j]], t.noun_labels[ids[j]], scores[j],
                                        letterbox.box_to_image(xywh[j]) if exist[j] >= threshold else None)
                        for j, role in enumerate(t.role_names[verb])})
        return out

    def glance_of(self, encoded: Mapping[str, np.ndarray]):
        """What ``rank_verbs`` takes, from the outputs of the encoder graph."""
        return encoded["glance"]

    def nouns_of(self, decoded: Mapping[str, np.ndarray]):
        """What ``match_nouns`` takes, from the outputs of the decoder graph."""
        return decoded["nouns"]


class GraphMatchedDecoder(SituationDecoder):
    """The same decoding where the backend's graphs end in the vocabulary matching
    (``Runtime.match_with``): they give the top-k verb indices and probabilities and the best
    noun per role instead of embeddings, so only the naming and boxes are left to Python."""

    def rank_verbs(self, glance: tuple[np.ndarray, np.ndarray]) -> tuple[list[list[int]], list[list[float]]]:
        ids, probs = glance
        return ids.tolist(), probs.tolist()

    def match_nouns(self, nouns: tuple[np.ndarray, np.ndarray]) -> tuple[list[list[int]], list[list[float]]]:
        ids, probs = nouns
        return ids[:, :, 0].tolist(), probs[:, :, 0].tolist()

    def glance_of(self, encoded: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return encoded["verb_ids"], encoded["verb_probs"]

    def nouns_of(self, decoded: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return decoded["noun_ids"], decoded["noun_probs"]


def recognize(memory: np.ndarray, glance: np.ndarray, decode: DecodeFn, letterboxes: Sequence[Letterbox],
              decoder: SituationDecoder, roles_for: str = "top1",
              gold_verbs: Optional[Sequence[str]] = None) -> list[Situation]:
    """Glance-then-gaze on the encoder outputs of a batch of images.

    ``roles_for="top1"`` decodes roles for the best verb only (deployment); ``"topk"``
    decodes them for every candidate (the top-5 metric needs them). ``gold_verbs`` adds
    the roles predicted for a given verb (``gt_verb_roles``, for evaluation).
    """
    ranked, probs = decoder.rank_verbs(glance)
    index = decoder.tables.verb_index
    per_image = [ids if roles_for == "topk" else ids[:1] for ids in ranked]
    if gold_verbs is not None:
        per_image = [ids + [index[gold]] for ids, gold in zip(per_image, gold_verbs)]
    owners = [i for i, ids in enumerate(per_image) for _ in ids]
    flat = [v for ids in per_image for v in ids]
    roles, verb_emb, mask = decoder.role_inputs(flat)
    if len(owners) > len(per_image):  # several verbs per image: repeat each image's memory
        memory = np.ascontiguousarray(memory[owners])
    nouns, boxes, exists = decode(memory, roles, verb_emb, mask)
    named = decoder.name_roles(flat, nouns, boxes, exists, [letterboxes[o] for o in owners])
    names = decoder.tables.verbs
    out, at = [], 0
    for i, ids in enumerate(ranked):
        decoded, at = named[at: at + len(per_image[i])], at + len(per_image[i])
        with_roles = len(per_image[i]) - (gold_verbs is not None)
        candidates = tuple(VerbCandidate(names[v], float(p), decoded[j] if j < with_roles else {})
                           for j, (v, p) in enumerate(zip(ids, probs[i])))
        out.append(Situation(candidates, decoded[-1] if gold_verbs is not None else None))
    return out
