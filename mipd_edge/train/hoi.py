"""HOI mode: train (``none``) or distil (``mipd``) a student that detects several
human-object interactions per image, on data in the HICO-DET annotation format.

The loop is the shared one (``train.loop.train``); what HOI adds is here:

* ``HoiTrainSet``: letterboxed images and, per image, its human-object pairs with their
  boxes, object and (multi-label) verbs, padded into tensors;
* interaction points as in PPDM: each pair trains the grid cell at the midpoint of its
  two boxes (CenterNet focal loss on the interaction map, Gaussian around the points),
  and at that cell its object, verbs and both boxes (L1 + GIoU); plus a glance term, the
  image's verbs as a multi-label target of the scene embedding;
* ``HoiMIPD``: the MIPD terms per matched pair. Each training pair is cropped into a
  one-situation image (``data.hoi_pairs``), so the teacher, the rationales and NMPA run
  unchanged; the verb embedding at a pair's interaction point is aligned with its scene
  knowledge and its verb distribution with the teacher's (both through the verb head
  alone), its features with the instance knowledge of the person and of the object; the
  glance with the mean scene knowledge of the image. With ``MipdConfig.pairs = "all"`` the
  unlabelled human-object pairs of an image get the scene and soft-label terms too, from
  the teacher's judgment of their crops (``data.hoi_pairs``);
* ``hold_out_verbs``: training verbs left out as if unseen, for the seen-verb calibration
  (``train/hoi_calibration.py``).

Open-vocabulary honesty: training images lose every pair of an unseen class
(``drop_unseen``), the vocabulary holds only verbs of seen classes, and checkpoints are
selected on held-out training images of seen classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..context import RunContext
from ..data.hico import (
    HoiImage,
    HoiSpace,
    classes_of_verbs,
    dev_holdout,
    drop_classes,
    image_dir,
    seen_verbs,
    training_images,
)
from ..data.hoi_pairs import (
    UNLABELLED,
    crop_name,
    pair_boxes,
    unlabelled_crop_name,
    unlabelled_pairs,
    write_pair_situations,
)
from ..data.hoi_vocabulary import ROLES, hoi_vocabulary, object_matrix, object_noun
from ..deploy.image import load_image
from ..deploy.preprocess import Preprocess
from ..errors import MipdEdgeError
from ..files import PathLike
from ..hoi_metrics import evaluate_hoi
from ..methods import objective_builder
from ..models.inference import interaction_decoder, predict_hoi
from ..models.student import HoiStudent
from ..progress import progress_bar
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .loop import to_device, weighted
from .losses import cxcywh_to_xyxy, generalized_iou, knowledge_distance, soft_label_kl
from .task import TrainingRun, TrainTask

log = logging.getLogger(__name__)



@dataclass
class HoiBatch:
    images: torch.Tensor  # (B, 3, S, S)
    human: torch.Tensor  # (B, G, 4) cx, cy, w, h of the input
    object: torch.Tensor  # (B, G, 4)
    objects: torch.Tensor  # (B, G) index into the vocabulary's objects, -1 for padding
    verbs: torch.Tensor  # (B, G, V) multi-hot over the training verbs
    valid: torch.Tensor  # (B, G) bool
    crops: torch.Tensor  # (B, G) index of the pair's crop in the pair-situation set, -1 if none
    index: torch.Tensor  # (B,)
    other_human: torch.Tensor  # (B, E, 4) the unlabelled pairs' boxes, cx, cy, w, h of the input
    other_object: torch.Tensor  # (B, E, 4)
    other_crops: torch.Tensor  # (B, E) index of the unlabelled pair's crop, -1 for padding


class HoiTrainSet:
    def __init__(self, images: Sequence[HoiImage], image_dir: Path, space: HoiSpace, vocabulary: Vocabulary,
                 preprocess: Preprocess, crops: Optional[dict[str, int]] = None, progress: bool = True,
                 unlabelled: Optional[dict[str, int]] = None):
        """``crops`` / ``unlabelled``: the index of each labelled / unlabelled pair's crop in
        the teacher's tables (``data.hoi_pairs``), for distillation."""
        self.preprocess, self.vocabulary = preprocess, vocabulary
        verbs = {v: i for i, v in enumerate(vocabulary.verbs)}
        objects = object_matrix(vocabulary)[0]
        n, s = len(images), preprocess.size
        g = max(1, max(len(pair_boxes(i)) for i in images))
        self.images = np.empty((n, s, s, 3), np.uint8)
        self.human = np.zeros((n, g, 4), np.float32)
        self.object = np.zeros((n, g, 4), np.float32)
        self.objects = np.full((n, g), -1, np.int64)
        self.verbs = np.zeros((n, g, len(verbs)), np.float32)
        self.crops = np.full((n, g), -1, np.int64)
        others = [[(pair, unlabelled[name]) for pair in unlabelled_pairs(image)
                   if (name := unlabelled_crop_name(image, *pair)) in unlabelled] if unlabelled else []
                  for image in images]
        e = max(1, max(map(len, others), default=1))
        self.other_human = np.zeros((n, e, 4), np.float32)
        self.other_object = np.zeros((n, e, 4), np.float32)
        self.other_crops = np.full((n, e), -1, np.int64)
        for i, image in enumerate(progress_bar(images, desc="loading HOI images", unit="img", enabled=progress)):
            self.images[i], letterbox = preprocess.letterbox(load_image(image_dir / image.file_name))
            for k, ((sub, obj), pair_verbs) in enumerate(pair_boxes(image).items()):
                self.human[i, k], self.object[i, k] = letterbox.boxes_to_input(image.boxes[[sub, obj]])
                self.objects[i, k] = objects.index(object_noun(image.categories[obj]))
                for v in pair_verbs:
                    self.verbs[i, k, verbs[space.verbs[v - 1]]] = 1.0
                if crops is not None:  # a pair with several verbs has one crop per verb: its first is the pair's
                    first = crops.get(crop_name(image, (sub, obj), pair_verbs[0]), -1)
                    self.crops[i, k] = crops.get(crop_name(image, (sub, obj)), first)
            for k, ((sub, obj), crop) in enumerate(others[i]):
                self.other_human[i, k], self.other_object[i, k] = letterbox.boxes_to_input(image.boxes[[sub, obj]])
                self.other_crops[i, k] = crop

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: np.ndarray, flip: Optional[np.ndarray] = None) -> HoiBatch:
        images = self.images[indices]
        boxes = [b[indices].copy() for b in (self.human, self.object, self.other_human, self.other_object)]
        if flip is not None and flip.any():
            images[flip] = images[flip][:, :, ::-1]
            for b in boxes:
                b[flip, :, 0] = 1.0 - b[flip, :, 0]
        human, obj, other_human, other_object = map(torch.from_numpy, boxes)
        objects = self.objects[indices]
        return HoiBatch(torch.from_numpy(self.preprocess.normalize(images)), human, obj, torch.from_numpy(objects),
                        torch.from_numpy(self.verbs[indices]), torch.from_numpy(objects >= 0),
                        torch.from_numpy(self.crops[indices]), torch.from_numpy(np.asarray(indices)), other_human,
                        other_object, torch.from_numpy(self.other_crops[indices]))


HEAT_SIGMA = 1.0  # cells: how far the interaction-point target spreads


@torch.no_grad()
def interaction_points(batch: HoiBatch, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pair's interaction point (the midpoint of its two box centres) as a grid cell.

    Returns the cells (flat over image x cell) and the pairs (flat over image x pair) they
    train, one pair per cell (the first), and the heat-map target: 1 at those cells,
    falling off as a Gaussian around them (CenterNet's penalty-reduced negatives)."""
    mid, cell = midpoint_cells(batch.human, batch.object, grid)
    b, g = batch.valid.shape
    slots, pairs, seen = [], [], set()
    for i, k in batch.valid.nonzero().tolist():
        if (i, int(cell[i, k])) not in seen:
            seen.add((i, int(cell[i, k])))
            slots.append(i * grid * grid + int(cell[i, k]))
            pairs.append(i * g + k)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([xs.flatten(), ys.flatten()], -1).to(mid) + 0.5  # (N, 2)
    d2 = ((centres[None, None] - mid[:, :, None]) ** 2).sum(-1)  # (B, G, N)
    heat = (torch.exp(-d2 / (2 * HEAT_SIGMA ** 2)) * batch.valid[..., None]).amax(1)
    heat.view(-1)[torch.tensor(slots, dtype=torch.long, device=heat.device)] = 1.0
    return torch.tensor(slots, dtype=torch.long), torch.tensor(pairs, dtype=torch.long), heat


def midpoint_cells(human: torch.Tensor, obj: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs' interaction points (midpoints of their box centres, in cells) and the grid
    cells they fall in, row-major."""
    mid = (human[..., :2] + obj[..., :2]) / 2 * grid  # (B, G, 2) in cells
    col, row = mid.floor().long().clamp(0, grid - 1).unbind(-1)
    return mid, row * grid + col


@torch.no_grad()
def unlabelled_points(batch: HoiBatch, grid: int, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cells of the unlabelled pairs (flat over image x cell) that no labelled pair
    trains (``taken``), one pair per cell (the first), and the index of each one's crop."""
    _, cell = midpoint_cells(batch.other_human, batch.other_object, grid)
    seen, slots, crops = set(taken.tolist()), [], []
    for i, k in (batch.other_crops >= 0).nonzero().tolist():
        slot = i * grid * grid + int(cell[i, k])
        if slot not in seen:
            seen.add(slot)
            slots.append(slot)
            crops.append(int(batch.other_crops[i, k]))
    return torch.tensor(slots, dtype=torch.long), torch.tensor(crops, dtype=torch.long)


def focal_heatmap_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss on the interaction map, normalised by the number of points."""
    pos = heat.eq(1).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    loss = -((1 - p) ** 2 * log_p * pos + (1 - heat) ** 4 * p ** 2 * log_not_p * (1 - pos)).sum()
    return loss / pos.sum().clamp(min=1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a multi-hot target spread evenly over its verbs."""
    target = target / target.sum(-1, keepdim=True).clamp(min=1)
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


class HoiObjective(nn.Module):
    """Distillation terms on top of the HOI losses; the base adds none (method ``none``)."""

    def forward(self, model: HoiStudent, out: dict[str, torch.Tensor], batch: HoiBatch, slots: torch.Tensor,
                gold: torch.Tensor, verb_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """``slots`` index the flattened (image, slot) predictions matched to the flattened
        (image, pair) targets ``gold``; ``verb_emb`` holds the training verbs' text embeddings."""
        return {}


class HoiMIPD(HoiObjective):
    """The scene and soft-label terms reach a pair through the verb head applied to its
    *detached* decoder features. Let through to the shared features, they took capacity
    from detection: at epoch 20 the object loss stood at 0.97 against 0.32 without
    distillation, and dev mAP at 16.9 against 30.0, whether the scene knowledge was
    aligned with the verb embedding itself or with a projection of the features beside it
    (dev mAP 18.4). Detached, they shape only how the verb head reads the features. The instance
    term keeps its projection of the shared features (the gaze knowledge has no head of its
    own to act through) and the glimpse term the glance.

    With ``other_scene`` / ``other_logits`` (``MipdConfig.pairs = "all"``) the unlabelled
    pairs of an image get the same scene and soft-label terms at their interaction points:
    the teacher's judgment of their crops, scene knowledge through the NMPA-trained scene
    prompt, its verb distribution over the training verbs. No rationale, label or name of
    theirs is known; an unseen interaction whose labels were removed is among them."""

    def __init__(self, scene: np.ndarray, instance: np.ndarray, teacher_logits: np.ndarray, model: HoiStudent,
                 cfg: TrainConfig, other_scene: Optional[np.ndarray] = None,
                 other_logits: Optional[np.ndarray] = None):
        super().__init__()
        self.scene = torch.tensor(np.asarray(scene), dtype=torch.float32)
        self.instance = torch.tensor(np.asarray(instance)[:, : len(ROLES)], dtype=torch.float32)
        self.logits = torch.tensor(np.asarray(teacher_logits), dtype=torch.float32)
        self.others = None if other_scene is None else (torch.tensor(np.asarray(other_scene), dtype=torch.float32),
                                                        torch.tensor(np.asarray(other_logits), dtype=torch.float32))
        self.cfg = cfg
        self.pair_proj = nn.Linear(model.cfg.d_model, len(ROLES) * self.instance.shape[2])

    def forward(self, model, out, batch, slots, gold, verb_emb):
        losses = self.labelled(model, out, batch, slots, gold, verb_emb)
        if self.others is not None:
            losses.update(self.unlabelled(model, out, batch, slots, verb_emb))
        return losses

    def verb_terms(self, model: HoiStudent, pair_feats: torch.Tensor, scene: torch.Tensor, logits: torch.Tensor,
                   verb_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scene alignment and soft-label terms of pairs, through the verb head on their detached features."""
        c = self.cfg
        verbs = F.normalize(model.verb_head(pair_feats.detach()), dim=-1)
        return (c.align_weight * knowledge_distance(verbs, scene, shape=c.mipd.distance),
                c.soft_weight * soft_label_kl(model.verb_scale() * verbs @ verb_emb.T, logits, c.temperature))

    def labelled(self, model, out, batch, slots, gold, verb_emb) -> dict[str, torch.Tensor]:
        c, dev = self.cfg, verb_emb.device
        crop = batch.crops.reshape(-1)[gold]
        known = crop >= 0
        if not known.any():
            return {}
        slots, crop = slots[known], crop[known].cpu()
        owner = slots // out["verbs"].shape[1]
        pair_feats = out["pair_feats"].flatten(0, 1)[slots]
        scene = self.scene[crop].to(dev)
        scene_term, soft_term = self.verb_terms(model, pair_feats, scene, self.logits[crop].to(dev), verb_emb)
        feats = self.pair_proj(pair_feats).reshape(len(slots), len(ROLES), -1)
        # a sum (its direction counts), in the knowledge's own precision whatever autocast made the glance
        image_scene = scene.new_zeros(out["glance"].shape).index_add_(0, owner, scene)
        has = image_scene.norm(dim=-1) > 0
        if c.mipd.distance == "l1":  # a distance of values: the unit direction of the image's pairs' knowledge
            image_scene = F.normalize(image_scene, dim=-1)
        return {
            "mipd_scene": scene_term,
            "mipd_instance": c.gaze_align_weight * knowledge_distance(feats, self.instance[crop].to(dev),
                                                                       shape=c.mipd.distance),
            "mipd_soft": soft_term,
            "mipd_glimpse": c.align_weight * knowledge_distance(out["glance"][has], image_scene[has],
                                                                shape=c.mipd.distance),
        }

    def unlabelled(self, model, out, batch, slots, verb_emb) -> dict[str, torch.Tensor]:
        dev = verb_emb.device
        others, crop = unlabelled_points(batch, model.cfg.image_size // 16, slots.cpu())
        if not len(others):
            return {}
        scene, logits = (t[crop].to(dev) for t in self.others)
        scene_term, soft_term = self.verb_terms(model, out["pair_feats"].flatten(0, 1)[others.to(dev)], scene,
                                                logits, verb_emb)
        return {"mipd_scene_unlabelled": scene_term, "mipd_soft_unlabelled": soft_term}


class HoiTrainStep(nn.Module):
    def __init__(self, model: HoiStudent, objective: HoiObjective, vocabulary: Vocabulary, cfg: TrainConfig):
        super().__init__()
        self.model, self.objective, self.cfg = model, objective, cfg
        self.trained = 0.0  # the fraction of training done, which the loop keeps up to date
        self.register_buffer("verb_emb", torch.from_numpy(vocabulary.verb_matrix()[1]), persistent=False)
        self.register_buffer("object_emb", torch.from_numpy(object_matrix(vocabulary)[1]), persistent=False)

    def forward(self, batch: HoiBatch) -> dict[str, torch.Tensor]:
        w = self.cfg.loss
        out = self.model(batch.images)
        verb_logits = self.model.verb_scale() * out["verbs"] @ self.verb_emb.T
        object_logits = self.model.noun_scale() * out["objects"] @ self.object_emb.T
        glance_logits = self.model.verb_scale() * out["glance"] @ self.verb_emb.T
        grid = self.model.cfg.image_size // 16
        slots, gold, heat = interaction_points(batch, grid)
        slots, gold = slots.to(batch.images.device), gold.to(batch.images.device)
        losses = {"interaction": w.exists * focal_heatmap_loss(out["interaction"], heat)}
        image_verbs = (batch.verbs * batch.valid[..., None]).amax(1)
        losses["glance"] = 0.5 * w.verb * soft_cross_entropy(glance_logits, image_verbs)
        if len(slots):
            flat = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731
            losses["object"] = w.noun * F.cross_entropy(flat(object_logits)[slots], flat(batch.objects)[gold])
            losses["verb"] = w.verb * soft_cross_entropy(flat(verb_logits)[slots], flat(batch.verbs)[gold])
            l1 = giou = 0.0
            for key, gold_boxes in (("human_boxes", batch.human), ("object_boxes", batch.object)):
                pred, true = flat(out[key])[slots], flat(gold_boxes)[gold]
                l1 = l1 + F.l1_loss(pred, true)
                giou = giou + (1 - generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(true))).mean()
            losses["box_l1"], losses["box_giou"] = w.box_l1 * l1, w.box_giou * giou
            losses.update(weighted(self.objective(self.model, out, batch, slots, gold, self.verb_emb),
                                   self.cfg.distillation_weight(self.trained)))
        return losses


# one image's raw HOI outputs (human boxes, object boxes, objects, verbs, interaction) and its letterbox
@torch.no_grad()
def gold_pair_verbs(model: HoiStudent, data: HoiTrainSet, seen: set[str], batch_size: int = 64,
                    verb_bias: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """Verb top-1 (%) at the ground-truth interaction points, over all of ``data``'s verbs:
    recognition with detection taken out of mAP. ``seen`` and ``unseen`` count the pairs
    whose verbs are all seen or all unseen; ``unseen_among_unseen`` ranks only the unseen
    verbs for the latter, so its gap to ``unseen`` is the pull of the training verbs."""
    if not isinstance(model, HoiStudent):
        raise MipdEdgeError(f"gold_pair_verbs needs an HOI student, got {type(model).__name__}")
    if data.preprocess.size != model.cfg.image_size:
        raise MipdEdgeError(f"the pairs are letterboxed to {data.preprocess.size} px, the student takes "
                            f"{model.cfg.image_size} px")
    if not seen & set(data.vocabulary.verbs):
        raise MipdEdgeError("none of the seen verbs is in the pairs' vocabulary: give verb names")
    model.eval()
    device = next(model.parameters()).device
    verb_emb = torch.from_numpy(data.vocabulary.verb_matrix()[1]).to(device)
    bias = torch.tensor([(verb_bias or {}).get(v, 0.0) for v in data.vocabulary.verbs], device=device)
    is_seen = torch.tensor([v in seen for v in data.vocabulary.verbs], device=device)
    hits: dict[str, list[bool]] = {"seen": [], "unseen": [], "unseen_among_unseen": []}
    for start in range(0, len(data), batch_size):
        batch = to_device(data.batch(np.arange(start, min(start + batch_size, len(data)))), device)
        slots, gold, _ = interaction_points(batch, model.cfg.image_size // 16)
        logits = model.verb_scale() * model(batch.images)["verbs"].flatten(0, 1)[slots.to(device)] @ verb_emb.T - bias
        target = batch.verbs.flatten(0, 1)[gold.to(device)] > 0
        top = target.gather(1, logits.argmax(1, keepdim=True))[:, 0]
        top_unseen = target.gather(1, logits.masked_fill(is_seen, -torch.inf).argmax(1, keepdim=True))[:, 0]
        only_unseen = ~(target & is_seen).any(1)
        hits["seen"] += top[~(target & ~is_seen).any(1)].tolist()
        hits["unseen"] += top[only_unseen].tolist()
        hits["unseen_among_unseen"] += top_unseen[only_unseen].tolist()
    return {k: 100 * float(np.mean(v)) if v else None for k, v in hits.items()} | {
        "pairs": {"seen": len(hits["seen"]), "unseen": len(hits["unseen"])}}


def hoi_dev_evaluator(dev: Sequence[HoiImage], image_dir: Path, space: HoiSpace, vocabulary: Vocabulary,
                      preprocess: Preprocess, batch_size: int):
    """Selection on held-out training images (seen classes only): their mAP."""
    def run(model: HoiStudent) -> tuple[dict, float]:
        detections = predict_hoi(model, dev, image_dir, interaction_decoder(model, vocabulary, space), preprocess,
                                 batch_size)
        metrics = evaluate_hoi(dev, detections, space)
        metrics.pop("per_class")
        return metrics, metrics["full"] or 0.0
    return run


@dataclass
class InteractionView:
    """An HOI dataset as an interaction student trains on it."""

    data_dir: Path
    space: HoiSpace
    train_images: list[HoiImage]  # no pair of an unseen (or held-out) class
    dev: list[HoiImage]  # held-out training images: checkpoint selection
    verb_ids: list[int]  # the training verbs
    vocab: Vocabulary


class InteractionTraining(TrainTask):
    """Human-object interaction detection: every (person, verb, object) of an image.

    ``mipd`` needs the teacher, the pair situations (``write_hoi_pairs``, ``mipd-edge
    hoi-pairs``) and their rationales (``mipd-edge rationales`` on them).
    ``inputs.hold_out_verbs`` (verb ids) are also left out of training, as if unseen, from the
    images the student would otherwise train and be selected on: a calibration student
    (``train/hoi_calibration.py``)."""

    name = "hoi"

    def read(self, data_dir, cfg, encoder, inputs):
        space, images = training_images(data_dir, inputs.zero_shot)
        training_verbs = seen_verbs(space, inputs.zero_shot)
        hold_out = inputs.hold_out_verbs
        if not set(hold_out) < set(training_verbs):
            raise MipdEdgeError(f"held-out verbs must be some, not all, of the training verbs {training_verbs}, "
                                f"got {list(hold_out)}")
        train_images, dev = (drop_classes(part, space, classes_of_verbs(space, hold_out))
                             for part in dev_holdout(images, cfg.seed))
        verb_ids = [v for v in training_verbs if v not in hold_out]
        return InteractionView(data_dir, space, train_images, dev, verb_ids, hoi_vocabulary(space, verb_ids, encoder))

    def prepare(self, view, model, cfg, encoder, inputs, run, env):
        space, vocab, hold_out = view.space, view.vocab, inputs.hold_out_verbs
        objective, crops, unlabelled, provenance = objective_builder(cfg.method, "hoi")(HoiObjectiveInputs(
            cfg, model, vocab, encoder, inputs.teacher, inputs.rationales, inputs.pairs, run,
            frozenset(space.verbs[v - 1] for v in hold_out)))
        images = image_dir(view.data_dir, "trainval")
        data = HoiTrainSet(view.train_images, images, space, vocab, model.preprocess, crops, run.progress, unlabelled)
        expected = sum(len(unlabelled_pairs(i)) for i in view.train_images) if unlabelled is not None else 0
        if (crops is not None and (data.crops[data.objects >= 0] < 0).mean() > 0.01) or \
                (data.other_crops >= 0).sum() < 0.99 * expected:
            raise MipdEdgeError(f"the pair situations in {inputs.pairs} do not hold the crops of this training set "
                                f"(zero-shot {inputs.zero_shot}): make them again with mipd-edge hoi-pairs")
        info = {"kind": "student", "task": "hoi", "method": cfg.method, "model": model.cfg.to_json(),
                "preprocess": model.preprocess.to_json(), "text_encoder": encoder.id,
                "text_encoder_spec": cfg.text_encoder, "train": cfg.to_json(), "training_verbs": vocab.verbs,
                "hoi_space": space.to_json(),
                "data": {"dir": str(view.data_dir), "train_images": len(data), "dev_images": len(view.dev),
                         "zero_shot": inputs.zero_shot,
                         **({"held_out_verbs": [space.verbs[v - 1] for v in hold_out]} if hold_out else {})},
                **provenance}
        evaluate = hoi_dev_evaluator(view.dev, images, space, vocab, model.preprocess, cfg.eval_batch_size)
        describe = (f"HOI {cfg.method}: {model.cfg.name} on {len(data)} images ({len(view.dev)} held out), "
                    f"{len(view.verb_ids)} training verbs, zero-shot {inputs.zero_shot}")
        return TrainingRun(model, HoiTrainStep(model, objective, vocab, cfg), data, evaluate, vocab, info, describe)


@dataclass
class HoiObjectiveInputs:
    """What an interaction method's objective is built from (``Method.objectives["hoi"]`` takes
    it and returns the objective, the pair crops' indexes, the unlabelled crops' indexes or
    None, and the provenance recorded in config.json)."""

    cfg: TrainConfig
    model: HoiStudent
    vocab: Vocabulary
    encoder: Any
    teacher: Optional[PathLike]
    rationales: Optional[PathLike]
    pairs: Optional[PathLike]
    run: RunContext
    hold_out: frozenset[str] = frozenset()


HoiObjectiveParts = tuple[HoiObjective, Optional[dict[str, int]], Optional[dict[str, int]], dict[str, Any]]


def no_distillation(inputs: HoiObjectiveInputs) -> HoiObjectiveParts:
    """``none``: the interaction losses alone."""
    return HoiObjective(), None, None, {}


def hoi_mipd_objective(inputs: HoiObjectiveInputs) -> HoiObjectiveParts:
    """Teacher cache and NMPA knowledge of the training pairs' crops (and, for ``pairs="all"``,
    of the unlabelled pairs' crops); the crops' indexes in them; what they were built from.
    Crops of the ``hold_out`` verbs are left out like unseen ones."""
    cfg, model, vocab, encoder = inputs.cfg, inputs.model, inputs.vocab, inputs.encoder
    teacher, rationales, pairs = inputs.teacher, inputs.rationales, inputs.pairs
    cache_dir, progress, hold_out = inputs.run.cache, inputs.run.progress, inputs.hold_out
    if not cfg.mipd.instance_head:
        raise MipdEdgeError("mipd without the instance head (instance_head: false) pulls a situation student's "
                            "noun embeddings; HOI distillation has it for its pairs' features only")
    if teacher is None or rationales is None or pairs is None:
        raise MipdEdgeError("HOI method 'mipd' needs --teacher, --pairs (mipd-edge hoi-pairs) and --rationales "
                            "(mipd-edge rationales on the pairs)")
    from ..data.split import dataset_split
    from ..data.swig import SituDataset
    from ..models.teacher import load_teacher
    from .nmpa import NmpaConfig, aligned_knowledge
    from .seen import check_unseen
    from .teacher_cache import teacher_cache, unlabelled_cache

    pairs_dir = Path(pairs)
    if not (pairs_dir / "train.json").is_file():
        raise MipdEdgeError(f"{pairs_dir}: no pair situations there (make them with mipd-edge hoi-pairs)")
    split = dataset_split(pairs_dir)
    split = {**split, "seen": [v for v in split["seen"] if v not in hold_out],
             "unseen": sorted({*split["unseen"], *hold_out})}
    crops_set = SituDataset(pairs_dir, "train", ov_split=split)
    check_unseen(teacher, pairs_dir)  # the crops are the student's images as the teacher judges them
    t = load_teacher(teacher, text_encoder=encoder)
    cache = teacher_cache(t, crops_set, vocab, cache_dir / "teacher", model.cfg.max_roles, progress=progress)
    knowledge = aligned_knowledge(cache, rationales, crops_set, encoder, vocab,
                                  NmpaConfig(seed=cfg.seed, max_roles=model.cfg.max_roles), cfg.mipd, inputs.run)
    crops = {name: i for i, name in enumerate(crops_set.names)}
    provenance = {"teacher": t.id, "teacher_cache": cache.key, "rationales": str(rationales), "pairs": str(pairs_dir),
                  "knowledge": knowledge.key}
    if cfg.mipd.pairs == "labelled":
        return (HoiMIPD(knowledge.scene, knowledge.instance, cache.teacher_verb_logits("HOI MIPD"), model, cfg), crops,
                None, provenance)
    if not (pairs_dir / f"{UNLABELLED}.json").is_file():
        raise MipdEdgeError(f"{pairs_dir}: no unlabelled pairs there, which mipd pairs 'all' distils at (make the "
                            "pairs with mipd-edge hoi-pairs --unlabelled)")
    others = unlabelled_cache(t, pairs_dir, vocab, cache_dir / "teacher", model.cfg.max_roles, progress=progress)
    objective = HoiMIPD(knowledge.scene, knowledge.instance, cache.teacher_verb_logits("HOI MIPD"), model, cfg,
                        knowledge.scene_of(others.global_feats), others.teacher_verb_logits("HOI MIPD"))
    unlabelled = {name: i for i, name in enumerate(others.names)}
    provenance.update(unlabelled_cache=others.key, unlabelled_pairs=len(unlabelled))
    return objective, crops, unlabelled, provenance


def write_hoi_pairs(data_dir: PathLike, out: PathLike, zero_shot: Optional[str] = None,
                    progress: bool = True, unlabelled: bool = False) -> Path:
    """The pair situations of the training images (unseen classes dropped) as a SWiG dataset,
    with ``unlabelled`` also the crops of their unlabelled pairs."""
    data_dir = Path(data_dir)
    space, images = training_images(data_dir, zero_shot)
    return write_pair_situations(images, image_dir(data_dir, "trainval"), space, out, zero_shot, progress, unlabelled)


__all__ = ["HoiTrainSet", "InteractionTraining", "gold_pair_verbs", "write_hoi_pairs"]
