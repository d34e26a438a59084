"""``mipd-edge distill``: train a student with ``none``, ``kd`` or ``mipd``, one loop for all,
on a situation dataset (``SituationTraining``, here) or an interaction dataset
(``train/hoi.py: InteractionTraining``): ``distill`` takes the task from the dataset.

* ``none``: GSR losses only; needs neither a teacher nor rationales.
* ``kd``: plus plain distillation: the glance embedding and the role features are aligned
  (through small projection heads) with the teacher's global and region features, and the
  verb logits with the teacher's distribution over the training verbs.
* ``mipd``: plus the knowledge that NMPA aligned with the positive and negative
  rationales: the glance embedding is aligned with the scene knowledge of its image, the
  role features with the instance knowledge of each role, and the same soft-label term.
  ``TrainConfig.mipd`` switches its parts.

Each method's row in ``methods.py`` names the function that builds its objective here
(``kd_objective``, ``mipd_objective``, ...); a method registered from outside the package
(``methods.register_method``) brings its own.

Open-vocabulary honesty: the student's data, vocabulary, teacher targets and rationales
come only from training verbs (seen and rare). Unseen verbs appear only in the dev metrics
that are logged, never in a loss or in checkpoint selection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..context import RunContext
from ..data.layouts import dataset_task
from ..data.swig import SituDataset
from ..errors import MipdEdgeError
from ..files import PathLike, read_json
from ..methods import method_info, objective_builder
from ..models.backbones import HF_CLIP
from ..models.student import Student, create_student, student_config
from ..text import CLIP_TEXT_PREFIX, DEFAULT_TEXT_ENCODER, load_text_encoder
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .data import Batch, GSRTrainSet, batch_rows, training_view
from .evaluation import dev_evaluator
from .hoi import InteractionTraining
from .loop import Distributed, Objective, TrainStep, init_distributed, main_first, prepare_output, train
from .losses import cosine_alignment, knowledge_distance, soft_label_kl
from .task import TrainingInputs, TrainingRun, TrainTask

log = logging.getLogger(__name__)


class FeatureKD(Objective):
    """Plain feature + logit distillation (``kd``); ``soft=False`` leaves out the logit term
    (for MIPD with the teacher's features beside its knowledge, which has its own)."""

    def __init__(self, teacher_global: np.ndarray, teacher_regions: np.ndarray, teacher_logits: Optional[np.ndarray],
                 model: Student, cfg: TrainConfig, soft: bool = True):
        super().__init__()
        self.global_, self.regions, self.logits, self.cfg = teacher_global, teacher_regions, teacher_logits, cfg
        self.glance_proj = nn.Linear(model.cfg.text_dim, teacher_global.shape[1])
        self.role_proj = nn.Linear(model.cfg.d_model, teacher_regions.shape[2])
        self.soft = soft

    def forward(self, model: Student, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        dev, c = verb_logits.device, self.cfg
        valid = batch.role_mask > 0
        losses = {
            "kd_glance": c.align_weight * cosine_alignment(self.glance_proj(out["glance"]),
                                                           batch_rows(self.global_, batch.index, dev)),
            "kd_gaze": c.gaze_align_weight * cosine_alignment(self.role_proj(out["role_feats"]),
                                                              batch_rows(self.regions, batch.index, dev), valid),
        }
        if self.soft:
            losses["kd_soft"] = c.soft_weight * soft_label_kl(verb_logits, batch_rows(self.logits, batch.index, dev),
                                                              c.temperature)
        return losses


class MIPDDistill(Objective):
    """Distillation of NMPA-aligned scene and instance knowledge (``mipd``); either may be
    left out (``None``), as the component ablation does."""

    def __init__(self, scene: Optional[np.ndarray], instance: Optional[np.ndarray],
                 teacher_logits: Optional[np.ndarray],
                 model: Student, cfg: TrainConfig, scene_proj: bool = False, features: Optional[FeatureKD] = None,
                 instance_head: bool = True):
        """``scene_proj``: the glance reaches the scene knowledge through a projection head, as
        in ``kd`` (asked for, or needed where anchored knowledge is not in the student's text
        space). ``instance_head``: the role features reach the instance knowledge through a
        projection head; without it the noun embeddings meet it directly. ``features``: plain
        KD's feature terms as well."""
        super().__init__()
        self.features = features
        self.scene, self.instance, self.logits, self.cfg = scene, instance, teacher_logits, cfg
        self.role_proj = (nn.Linear(model.cfg.d_model, instance.shape[2]) if instance is not None and instance_head
                          else None)
        self.scene_proj = (nn.Linear(model.cfg.text_dim, scene.shape[1]) if scene is not None and scene_proj
                           else nn.Identity())

    def forward(self, model: Student, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        dev, c, losses = verb_logits.device, self.cfg, {}
        if self.logits is not None:
            losses["mipd_soft"] = c.soft_weight * soft_label_kl(verb_logits, batch_rows(self.logits, batch.index, dev),
                                                                c.temperature)
        if self.scene is not None:
            losses["mipd_scene"] = c.align_weight * knowledge_distance(
                self.scene_proj(out["glance"]), batch_rows(self.scene, batch.index, dev), shape=c.mipd.distance)
        if self.instance is not None:
            roles = out["nouns"] if self.role_proj is None else self.role_proj(out["role_feats"])
            losses["mipd_instance"] = c.gaze_align_weight * knowledge_distance(
                roles, batch_rows(self.instance, batch.index, dev), batch.role_mask > 0, c.mipd.distance)
        if self.features is not None:
            losses.update(self.features(model, out, batch, verb_logits, noun_emb))
        return losses


@dataclass
class ObjectiveInputs:
    """What a situation method's objective is built from (``Method.objectives["gsr"]`` takes it)."""

    cfg: TrainConfig
    model: Student
    train_set: SituDataset
    vocab: Vocabulary  # the training verbs' vocabulary
    encoder: Any  # the student's text encoder
    teacher: Optional[Path]
    rationales: Optional[Path]
    run: RunContext
    env: Distributed


@dataclass
class TeacherTargets:
    """A teacher's cached features on the training images, checked to have seen none of them."""

    teacher: Any
    cache: Any
    provenance: dict[str, Any]


def teacher_targets(inputs: ObjectiveInputs) -> TeacherTargets:
    """Load the teacher (refusing one that saw these images) and its features on the training
    images, computed once and cached."""
    if inputs.teacher is None:
        raise MipdEdgeError(f"method {inputs.cfg.method!r} needs --teacher")
    from ..models.teacher import load_teacher
    from .seen import check_unseen
    from .teacher_cache import teacher_cache

    check_unseen(inputs.teacher, inputs.train_set.root)
    t = load_teacher(inputs.teacher, text_encoder=inputs.encoder)
    cache = main_first(inputs.env, lambda: teacher_cache(t, inputs.train_set, inputs.vocab,
                                                         inputs.run.cache / "teacher", inputs.model.cfg.max_roles,
                                                         progress=inputs.run.progress))
    return TeacherTargets(t, cache, {"teacher": t.id, "teacher_cache": cache.key})


def no_distillation(inputs: ObjectiveInputs) -> tuple[Objective, dict[str, Any]]:
    """``none``: the GSR losses alone."""
    return Objective(), {}


def kd_objective(inputs: ObjectiveInputs) -> tuple[Objective, dict[str, Any]]:
    """``kd``: the teacher's global and region features and its soft labels."""
    targets = teacher_targets(inputs)
    cache = targets.cache
    return FeatureKD(cache.global_feats, cache.regions, cache.teacher_verb_logits("kd's soft labels"), inputs.model,
                     inputs.cfg), targets.provenance


def mipd_objective(inputs: ObjectiveInputs) -> tuple[Objective, dict[str, Any]]:
    """``mipd``: the knowledge NMPA aligned with the rationales, shaped by ``cfg.mipd``."""
    cfg, model, options = inputs.cfg, inputs.model, inputs.cfg.mipd
    if options.pairs != "labelled":
        raise MipdEdgeError("mipd pairs 'all' distils at the unlabelled human-object pairs of HOI images: "
                            "it is for interaction datasets")
    if inputs.rationales is None:
        raise MipdEdgeError("method 'mipd' needs --rationales (make them with `mipd-edge rationales`)")
    from .nmpa import NmpaConfig, aligned_knowledge

    targets = teacher_targets(inputs)
    cache, encoder = targets.cache, inputs.encoder
    logits = cache.teacher_verb_logits("MIPD's soft-label term") if cfg.soft_weight else None
    space = targets.teacher.text_encoder() if options.knowledge == "anchored" else encoder
    knowledge = main_first(inputs.env, lambda: aligned_knowledge(
        cache, inputs.rationales, inputs.train_set, space, inputs.vocab,
        NmpaConfig(seed=cfg.seed, max_roles=model.cfg.max_roles), options, inputs.run))
    provenance = {**targets.provenance, "rationales": str(inputs.rationales), "knowledge": knowledge.key}
    features = (FeatureKD(cache.global_feats, cache.regions, None, model, cfg, soft=False)
                if options.teacher_features else None)
    return MIPDDistill(knowledge.scene if options.scene else None, knowledge.instance if options.instance else None,
                       logits, model, cfg, scene_proj=options.scene_head or space.id != encoder.id,
                       features=features, instance_head=options.instance_head), provenance


def with_unlabeled(inputs: ObjectiveInputs, built: tuple[Objective, dict[str, Any]], data: GSRTrainSet,
                   folder: Path) -> tuple[Objective, Any, dict[str, Any]]:
    """The method's objective (and its provenance) and its training set, each given an
    unlabeled part: the images of ``folder`` and the teacher's label-free targets on them
    (``train/unlabeled.py``). The glance reaches the teacher's feature through the method's own
    projection head where it has one (kd; mipd with the teacher's features), and the scene
    knowledge through mipd's."""
    if inputs.teacher is None:
        raise MipdEdgeError("--unlabeled needs --teacher: on unlabeled images the student learns from what the "
                            "teacher sees in them")
    from ..models.teacher import load_teacher
    from .nmpa import Knowledge
    from .unlabeled import GlanceHeads, UnlabeledDistill, UnlabeledPool, WithUnlabeled, pool_targets

    objective, provenance = built
    pool = UnlabeledPool(folder, inputs.model.preprocess, inputs.run.progress)
    teacher = load_teacher(inputs.teacher, text_encoder=inputs.encoder)
    heads, soft, scene_of = GlanceHeads(), False, None
    if isinstance(objective, FeatureKD):
        heads, soft = GlanceHeads(glance=objective.glance_proj), objective.soft
    elif isinstance(objective, MIPDDistill):
        soft = objective.logits is not None
        heads = GlanceHeads(glance=None if objective.features is None else objective.features.glance_proj,
                            scene=objective.scene_proj)
        if objective.scene is not None:
            scene_of = Knowledge.at(inputs.run.cache / "knowledge" / provenance["knowledge"]).scene_of
    shared = teacher.image_text and teacher.text_encoder().id == inputs.encoder.id
    if shared and inputs.cfg.unlabeled_glance == "auto":
        heads.glance = nn.Identity()
    soft = soft and inputs.cfg.unlabeled_soft
    targets, key = main_first(inputs.env, lambda: pool_targets(teacher, pool, inputs.vocab, inputs.run, soft,
                                                               scene_of))
    return (UnlabeledDistill(objective, targets, inputs.model, inputs.vocab, inputs.cfg, heads),
            WithUnlabeled(data, pool, inputs.cfg.unlabeled_batch, inputs.cfg.seed),
            {**provenance, "unlabeled": {"dir": str(folder), "images": len(pool), "teacher_cache": key,
                                         "glance": "direct" if isinstance(heads.glance, nn.Identity) else "head"}})


def build_objective(inputs: ObjectiveInputs) -> tuple[Objective, dict[str, Any]]:
    """The objective of the method's row for situations, and what it was built from (recorded
    in config.json)."""
    return objective_builder(inputs.cfg.method, "gsr")(inputs)


def matched_text_encoder(cfg: TrainConfig) -> TrainConfig:
    """A student on a CLIP image tower embeds its vocabulary with the same CLIP model's text
    tower (the authors' student sits on CLIP), unless the configuration names another encoder."""
    model = student_config(cfg.student, **cfg.model)
    if model.backbone != HF_CLIP or cfg.text_encoder != DEFAULT_TEXT_ENCODER:
        return cfg
    return replace(cfg, text_encoder=f"{CLIP_TEXT_PREFIX}{model.backbone_weights}")


@dataclass
class SituationView:
    """A SWiG-format dataset as a situation student trains on it."""

    data_dir: Path
    split: dict
    train_set: SituDataset  # no image of an unseen verb
    vocab: Vocabulary  # the training (seen and rare) verbs
    dev: SituDataset
    full_vocab: Vocabulary  # every verb: the logged dev metrics score unseen ones too, selection does not


class SituationTraining(TrainTask):
    """Grounded situation recognition: a verb, its roles' nouns and boxes per image."""

    name = "gsr"

    def read(self, data_dir, cfg, encoder, inputs):
        split, train_set, vocab = training_view(data_dir, encoder)
        dev = SituDataset(data_dir, "dev", space=train_set.space)
        return SituationView(data_dir, split, train_set, vocab, dev, Vocabulary.from_space(train_set.space, encoder))

    def prepare(self, view, model, cfg, encoder, inputs, run, env):
        needs = ObjectiveInputs(cfg, model, view.train_set, view.vocab, encoder,
                                None if inputs.teacher is None else Path(inputs.teacher),
                                None if inputs.rationales is None else Path(inputs.rationales), run, env)
        objective, provenance = build_objective(needs)
        data = GSRTrainSet(view.train_set, view.vocab, model.preprocess, model.cfg.max_roles, progress=run.progress)
        unlabeled = ""
        if inputs.unlabeled is not None:
            objective, data, provenance = with_unlabeled(needs, (objective, provenance), data, Path(inputs.unlabeled))
            unlabeled = f" and {provenance['unlabeled']['images']} unlabeled images"
        manifest = view.data_dir / "synthsitu.json"
        info = {"kind": "student", "method": cfg.method, "model": model.cfg.to_json(),
                "preprocess": model.preprocess.to_json(), "text_encoder": encoder.id,
                "text_encoder_spec": cfg.text_encoder, "train": cfg.to_json(), "training_verbs": view.vocab.verbs,
                "data": {"dir": str(view.data_dir), "train_images": len(data), "split": view.split,
                         "synthsitu": read_json(manifest) if manifest.is_file() else None},
                **provenance}
        evaluate = dev_evaluator(view.dev, view.full_vocab, view.vocab, view.split, model.preprocess,
                                 cfg.eval_batch_size)
        describe = (f"distilling {model.cfg.name} ({model.cfg.backbone}, "
                    f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) with method {cfg.method} "
                    f"on {len(data)} images of {len(view.vocab.verbs)} training verbs{unlabeled}")
        return TrainingRun(model, TrainStep(model, objective, view.vocab, cfg), data, evaluate, view.vocab, info,
                           describe)


TRAIN_TASKS: dict[str, TrainTask] = {task.name: task for task in (SituationTraining(), InteractionTraining())}


def distill(data_dir: PathLike, out: PathLike, cfg: TrainConfig, inputs: TrainingInputs = TrainingInputs(),
            run: RunContext = RunContext()) -> dict[str, Any]:
    """Train a student with ``cfg.method`` on ``data_dir``: a situation student on a SWiG-format
    dataset, an interaction student on an HOI dataset (``data.layouts.dataset_task``)."""
    data_dir, out = Path(data_dir), Path(out)
    task = TRAIN_TASKS[dataset_task(data_dir)]
    method_info(cfg.method, task.name)
    if inputs.unlabeled is not None and task.name != "gsr":
        raise MipdEdgeError("--unlabeled trains situation students; an interaction student learns from the "
                            "unlabelled pairs of its images instead ('mipd: {pairs: all}')")
    prepare_output(out, run.resume, run.overwrite)
    cfg = matched_text_encoder(cfg)
    encoder = load_text_encoder(cfg.text_encoder, cache_dir=run.cache / "text")
    view = task.read(data_dir, cfg, encoder, inputs)
    torch.manual_seed(cfg.seed)
    model = create_student(cfg.student, image_size=cfg.image_size, text_dim=encoder.dim, task=task.name, **cfg.model)
    env = init_distributed()
    job = task.prepare(view, model, cfg, encoder, inputs, run, env)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        job.vocabulary.save(out / "vocabulary.npz")
    log.info("%s -> %s", job.describe, out)
    return train(job, cfg, out, env, run)
