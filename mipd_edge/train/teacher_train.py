"""``mipd-edge train-teacher``: the built-in SynthSitu teacher.

A foundation vision-language model cannot be downloaded here, so the SDK trains a stand-in
on its own data, never the students' (``seen``):
a larger network than the student, trained on *all* SynthSitu verbs (a foundation model
has seen everything), aligning images with verb descriptions through the bundled text
encoder (cosine logits against description embeddings, i.e. CLIP's objective with the
class descriptions as captions), and every image patch with noun descriptions: the mean
patch feature inside each role's box must name the role's noun. Its global feature, patch
features and text tower then serve distillation like CLIP's would.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ..context import RunContext
from ..data.swig import SituDataset
from ..files import PathLike
from ..models.teacher import TEACHER_CONFIG, TeacherNet, roi_pool
from ..text import load_text_encoder
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .data import Batch, GSRTrainSet
from .evaluation import dev_evaluator
from .loop import Objective, TrainStep, init_distributed, prepare_output, train
from .losses import annotator_cross_entropy
from .seen import record_seen
from .task import TrainingRun

log = logging.getLogger(__name__)


class RegionNounObjective(Objective):
    """Patch features pooled in each role's box must match the role's noun description."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, model: TeacherNet, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        regions = roi_pool(model.patches(out["memory"]), batch.boxes, batch.has_box)
        logits = model.noun_scale() * regions @ noun_emb.T
        return {"region_noun": self.weight * annotator_cross_entropy(logits, batch.nouns, batch.role_mask > 0)}


def train_teacher(data_dir: PathLike, out: PathLike, cfg: TrainConfig, run: RunContext = RunContext(),
                  sources: Sequence[PathLike] = ()) -> dict[str, Any]:
    """Train the teacher on ``data_dir`` (train split, selection on dev), recording in
    ``out/seen.json`` every image it could have seen: those of ``data_dir`` and of the
    ``sources`` its images were cut from (the HOI pair crops)."""
    data_dir, out = Path(data_dir), Path(out)
    prepare_output(out, run.resume, run.overwrite)
    record_seen(out, data_dir, sources)
    encoder = load_text_encoder(cfg.text_encoder, cache_dir=run.cache / "text")
    train_set = SituDataset(data_dir, "train")  # every verb: the teacher stands in for a foundation model
    dev = SituDataset(data_dir, "dev", space=train_set.space)
    vocab = Vocabulary.from_space(train_set.space, encoder)
    torch.manual_seed(cfg.seed)
    net = TeacherNet(replace(TEACHER_CONFIG, image_size=cfg.image_size, text_dim=encoder.dim, **cfg.model))
    preprocess = net.preprocess
    data = GSRTrainSet(train_set, vocab, preprocess, net.cfg.max_roles, progress=run.progress)
    info = {"kind": "teacher", "model": net.cfg.to_json(), "preprocess": preprocess.to_json(),
            "text_encoder": encoder.id, "text_encoder_spec": cfg.text_encoder, "train": cfg.to_json(),
            "data": {"dir": str(data_dir), "train_images": len(data), "verbs": len(vocab.verbs)}}
    log.info("training the SynthSitu teacher (%.1fM parameters) on %d images of all %d verbs -> %s",
             sum(p.numel() for p in net.parameters()) / 1e6, len(data), len(vocab.verbs), out)
    evaluate = dev_evaluator(dev, vocab, vocab, None, preprocess, cfg.eval_batch_size)
    job = TrainingRun(net, TrainStep(net, RegionNounObjective(), vocab, cfg), data, evaluate, vocab, info, "teacher")
    return train(job, cfg, out, init_distributed(), run)
