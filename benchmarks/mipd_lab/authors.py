"""The authors' formulation of MIPD (GitHub caicch/Ov-GSR, ``models/ovgsr.py``), a method of
its own (``authors``, registered here) kept beside ours so that the two can be compared on
the same data.

What their code computes, put on our student and teacher:

* **Scene knowledge**: one-head attention whose query is the teacher's image feature (their
  BLIP-2 CLS token through ``proj_prompt``) and whose keys and values are the projected
  token embeddings of the image's positive glimpse rationale (``proj_verb_pos``); the
  output at the query, L2-normalised. Their edge and box prompts are added to the patch
  tokens only, and the knowledge is read at position 0 of a single attention layer, whose
  query there is the un-prompted CLS token: the prompts cannot change what is read, so
  this module, which computes the same, has none.
* **Instance knowledge**: the same query and attention over each role's positive gaze
  rationale (their one noun caption per image), through keys of its own (``proj_class_pos``).
* **Negatives**: the mean token embedding of one negative rationale (the one the teacher
  judged most plausible), through a projection of its own (``proj_verb_neg`` /
  ``proj_class_neg``: their code does not share it with the positives), and a hinge on
  the cosine similarity at margin 0: weight 5 for the glimpse, 1 for the gaze.
* **Distillation**: L1 between the student's verb feature (our unit glance embedding) and
  the scene knowledge, weight ``align_weight`` (their 2), with gradients to both sides:
  knowledge and student train together, with no separate alignment stage. Instance
  knowledge reaches the student only through the query projection and attention it shares
  with the scene side, as in their code. There is no soft-label term.
* Their GSR losses: ``AUTHORS_LOSS`` in ``variants.py``.

Not copied, being broken there: a box prompt created after the optimizer (so never
trained; here every parameter is in the objective the optimizer sees); horizontal flips
that mirror boxes but not cached features (here no knowledge depends on where things are);
checkpoints chosen on unseen verbs (here selection sees training verbs only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mipd_edge.data.swig import SituDataset
from mipd_edge.errors import MipdEdgeError
from mipd_edge.methods import Method, register_method
from mipd_edge.models.student import Student
from mipd_edge.train.config import TrainConfig
from mipd_edge.train.data import Batch, batch_rows
from mipd_edge.train.distill import ObjectiveInputs, teacher_targets
from mipd_edge.train.loop import Objective
from mipd_edge.train.losses import INSTANCE_NEGATIVE_WEIGHT, SCENE_NEGATIVE_WEIGHT
from mipd_edge.vocabulary import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class RationaleTokens:
    """Token embeddings of the rationales, each distinct sentence once, and per image and role
    the row of its sentence (-1 = none)."""

    tokens: np.ndarray  # (T, L, E) float16, positives' token embeddings, zero-padded
    padding: np.ndarray  # (T, L) bool, True where a row is padding
    negatives: np.ndarray  # (U, E) float32, mean token embedding of each negative
    glimpse: np.ndarray  # (N,) positive glimpse row
    glimpse_negative: np.ndarray  # (N,)
    gaze: np.ndarray  # (N, R) positive gaze row of each role
    gaze_negative: np.ndarray  # (N, R)


def rationale_tokens(records: dict[str, dict], names: list[str], dataset: SituDataset, vocab: Vocabulary, encoder,
                     max_roles: int) -> RationaleTokens:
    """Per training image (``names``, in training-set order) its positive rationales' tokens and
    its hardest negative's mean token; ``encoder`` must give token embeddings."""
    if not hasattr(encoder, "encode_tokens"):
        raise MipdEdgeError(f"the authors' formulation needs token embeddings, which text encoder {encoder.id} "
                            "does not give (use a sentence-transformers model)")
    missing = [n for n in names if n not in records]
    if missing:
        raise MipdEdgeError(f"{len(missing)} training images have no rationales (e.g. {missing[:3]})")
    positives: dict[str, int] = {}
    negatives: dict[str, int] = {}
    n = len(names)
    glimpse, glimpse_negative = np.full(n, -1), np.full(n, -1)
    gaze, gaze_negative = np.full((n, max_roles), -1), np.full((n, max_roles), -1)

    def rows(side: dict) -> tuple[int, int]:
        pos = positives.setdefault(side["positive"], len(positives))
        negs = side["negatives"]
        return pos, negatives.setdefault(negs[0]["text"], len(negatives)) if negs else -1

    for i, name in enumerate(names):
        rec = records[name]
        glimpse[i], glimpse_negative[i] = rows(rec["glimpse"])
        for r, role in enumerate(vocab.frame(dataset.annotations[name].verb).roles[:max_roles]):
            if role in rec["gaze"]:
                gaze[i, r], gaze_negative[i, r] = rows(rec["gaze"][role])
    pos_tokens = encoder.encode_tokens(list(positives))
    length, dim = max(len(t) for t in pos_tokens), pos_tokens[0].shape[1]
    tokens = np.zeros((len(pos_tokens), length, dim), np.float16)
    padding = np.ones((len(pos_tokens), length), bool)
    for j, t in enumerate(pos_tokens):
        tokens[j, :len(t)], padding[j, :len(t)] = t, False
    neg_tokens = encoder.encode_tokens(list(negatives))
    negative_means = np.stack([t.mean(0) for t in neg_tokens]).astype(np.float32) if neg_tokens else \
        np.zeros((0, dim), np.float32)
    log.info("authors' MIPD: token embeddings of %d positive and %d negative rationales (up to %d tokens)",
             len(positives), len(negatives), length)
    return RationaleTokens(tokens, padding, negative_means, glimpse, glimpse_negative, gaze, gaze_negative)


def hinge(x: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Mean of relu(cos(x, negative)) over rows: only a negative on the same side of the
    origin is pushed away (margin 0)."""
    if not len(x):
        return negative.sum() * 0
    return F.relu(F.cosine_similarity(x, negative, dim=-1)).mean()


class AuthorsMIPD(Objective):
    """The authors' knowledge modules and losses, trained jointly with the student."""

    def __init__(self, teacher_global: np.ndarray, tokens: RationaleTokens, model: Student, cfg: TrainConfig):
        super().__init__()
        d, e = model.cfg.text_dim, tokens.tokens.shape[2]
        self.global_, self.cfg = teacher_global, cfg
        self.query = nn.Linear(teacher_global.shape[1], d)  # proj_prompt
        self.scene_keys, self.scene_negative = nn.Linear(e, d), nn.Linear(e, d)  # proj_verb_pos / _neg
        self.instance_keys, self.instance_negative = nn.Linear(e, d), nn.Linear(e, d)  # proj_class_pos / _neg
        self.attention = nn.MultiheadAttention(d, num_heads=1, batch_first=True)
        for name, array in vars(tokens).items():  # on the training device, never in a checkpoint
            self.register_buffer(name, torch.from_numpy(array), persistent=False)

    def knowledge(self, query: torch.Tensor, rows: torch.Tensor, keys: nn.Linear) -> torch.Tensor:
        """(M, d) queries attending to the tokens of rationale ``rows`` (M,) -> (M, d), unit norm."""
        values = keys(self.tokens[rows].float())
        out, _ = self.attention(query[:, None], values, values, key_padding_mask=self.padding[rows],
                                need_weights=False)
        return F.normalize(out[:, 0], dim=-1)

    def forward(self, model: Student, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        i = batch.index
        query = self.query(batch_rows(self.global_, i, verb_logits.device))
        scene = self.knowledge(query, self.glimpse[i], self.scene_keys)
        neg = self.glimpse_negative[i]
        has = neg >= 0
        roles = self.gaze[i]
        valid = roles >= 0
        instance = self.knowledge(query[:, None].expand(-1, roles.shape[1], -1)[valid], roles[valid],
                                  self.instance_keys)
        ineg = self.gaze_negative[i][valid]
        ihas = ineg >= 0
        return {
            "authors_distill": self.cfg.align_weight * F.l1_loss(out["glance"], scene),
            "authors_scene_negative": SCENE_NEGATIVE_WEIGHT * hinge(
                scene[has], self.scene_negative(self.negatives[neg[has]])),
            "authors_instance_negative": INSTANCE_NEGATIVE_WEIGHT * hinge(
                instance[ihas], self.instance_negative(self.negatives[ineg[ihas]])),
        }


def authors_objective(inputs: ObjectiveInputs) -> tuple[Objective, dict]:
    """The authors' knowledge modules on the teacher's cached global features and the token
    embeddings of the teacher-judged (or, with ``mipd.negatives: random``, random) rationales."""
    from mipd_edge.train.rationales import load_judged_rationales

    if inputs.rationales is None:
        raise MipdEdgeError("method 'authors' needs --rationales (make them with `mipd-edge rationales`)")
    targets = teacher_targets(inputs)
    tokens = rationale_tokens(load_judged_rationales(inputs.rationales, inputs.cfg.mipd.judgment),
                              targets.cache.names, inputs.train_set, inputs.vocab, inputs.encoder,
                              inputs.model.cfg.max_roles)
    return (AuthorsMIPD(targets.cache.global_feats, tokens, inputs.model, inputs.cfg),
            {**targets.provenance, "rationales": str(inputs.rationales)})


AUTHORS = Method("authors", teacher=True, rationales=True, objectives={"gsr": authors_objective},
                 what="the authors' formulation (caicch/Ov-GSR): knowledge trained jointly with the student")
register_method(AUTHORS)
