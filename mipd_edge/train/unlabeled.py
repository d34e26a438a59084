"""Distillation on unlabeled images (``mipd-edge distill --unlabeled DIR``): a folder of the
deployment's own footage, with no annotation, on which the student also learns from what the
teacher sees.

An unlabeled image has no verb, no roles and no boxes, so the student learns there only what
needs none of them:

* the teacher's global feature, in the glance: directly where the teacher's image-text space
  is the student's text space (then the glance learns to score every verb, unseen ones too, as
  the teacher does), else through ``kd``'s projection head where the method has one, so that
  labeled and unlabeled images teach one map (``TrainConfig.unlabeled_glance``);
* its patch features pooled in the cells of a fixed ``GRID`` x ``GRID`` grid (regions that need
  no box), in the student's encoder tokens pooled in the same cells;
* its distribution over the *training* verbs, where the method distils soft labels;
* with ``mipd``, the scene knowledge: NMPA's scene prompt, trained on the labeled images'
  rationales, maps any teacher feature into the student's text space. Instance knowledge is
  not distilled there: it is defined per role of a verb, inside the role's box.

No verb outside the training vocabulary is named anywhere: the teacher scores training verbs
only, and file names are never read as labels. Each training step takes a batch of labeled
images and one of unlabeled images; the unlabeled batch is a pure function of the labeled
one, so a resumed run draws the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..context import RunContext
from ..deploy.image import image_folder, load_image
from ..deploy.postprocess import role_inputs
from ..deploy.preprocess import Preprocess
from ..errors import InvalidImageError, MipdEdgeError
from ..models.student import Student
from ..models.teacher import roi_pool
from ..progress import progress_bar
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .data import Batch, UnlabeledBatch, batch_rows
from .loop import Objective
from .losses import cosine_alignment, knowledge_distance, soft_label_kl

log = logging.getLogger(__name__)

GRID = 3  # cells per side of the fixed regions an unlabeled image is distilled in
RECOMMENDED_UNLABELED_IMAGES = 500  # fewer add little (docs/footage.md)


def grid_cells(width: int, height: int) -> np.ndarray:
    """The ``GRID`` x ``GRID`` cells of an image, [x1, y1, x2, y2] in its pixels, row by row."""
    xs, ys = np.linspace(0, width, GRID + 1), np.linspace(0, height, GRID + 1)
    return np.array([[xs[c], ys[r], xs[c + 1], ys[r + 1]] for r in range(GRID) for c in range(GRID)], np.float32)


class UnlabeledPool:
    """The folder's readable images, letterboxed once as the student sees them (uint8), with
    their grid cells in the network input's coordinates. An unreadable file is skipped with a
    warning: a folder of footage may hold a broken frame."""

    def __init__(self, folder: Path, preprocess: Preprocess, progress: bool = True):
        files = image_folder(folder, "--unlabeled")
        if len(files) < RECOMMENDED_UNLABELED_IMAGES:
            log.warning("--unlabeled %s holds %d images; the student gains little from fewer than %d",
                        folder, len(files), RECOMMENDED_UNLABELED_IMAGES)
        self.folder, self.preprocess = Path(folder), preprocess
        s, n = preprocess.size, len(files)
        images, cells, kept = np.empty((n, s, s, 3), np.uint8), np.empty((n, GRID * GRID, 4), np.float32), []
        for f in progress_bar(files, desc="unlabeled images", unit="img", enabled=progress):
            try:
                image = load_image(f)
            except InvalidImageError as exc:
                log.warning("--unlabeled skips %s", exc)
                continue
            images[len(kept)], letterbox = preprocess.letterbox(image)
            cells[len(kept)] = letterbox.boxes_to_input(grid_cells(image.shape[1], image.shape[0]))
            kept.append(f)
        if not kept:
            raise MipdEdgeError(f"--unlabeled {folder}: no readable image")
        self.files, self.images, self.cells = kept, images[:len(kept)], cells[:len(kept)]

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, indices: np.ndarray) -> UnlabeledBatch:
        return UnlabeledBatch(images=torch.from_numpy(self.preprocess.normalize(self.images[indices])),
                              cells=torch.from_numpy(self.cells[indices]), index=torch.from_numpy(indices))


class WithUnlabeled:
    """A labeled training set with ``per_batch`` unlabeled images beside each of its batches,
    drawn by a generator seeded with (seed, the labeled batch's indices)."""

    def __init__(self, labeled: Any, pool: UnlabeledPool, per_batch: int, seed: int):
        self.labeled, self.pool, self.per_batch, self.seed = labeled, pool, per_batch, seed

    def __len__(self) -> int:
        return len(self.labeled)

    def batch(self, indices: np.ndarray, flip: Optional[np.ndarray] = None) -> Batch:
        batch = self.labeled.batch(indices, flip)
        rng = np.random.default_rng([self.seed, *(int(i) for i in indices)])
        picks = rng.choice(len(self.pool), self.per_batch, replace=len(self.pool) < self.per_batch)
        batch.unlabeled = self.pool.batch(np.sort(picks))
        return batch


@dataclass
class UnlabeledTargets:
    """What the teacher gives per unlabeled image."""

    global_feats: np.ndarray  # (N, D)
    cells: np.ndarray  # (N, GRID * GRID, D): its patch features pooled in the grid cells
    verb_logits: Optional[np.ndarray]  # (N, V) over the training verbs; None: not distilled
    scene: Optional[np.ndarray]  # (N, text_dim) mipd's scene knowledge; None: not distilled


@dataclass
class GlanceHeads:
    """How the glance reaches the teacher's targets on unlabeled images: ``glance``, the
    teacher's global feature (``nn.Identity()`` where the teacher's space is the student's text
    space, the method's own projection head where it has one, so that one map serves labeled and
    unlabeled images, ``None`` for a head of its own); ``scene``, the scene knowledge (mipd's
    head; ``None``: directly). Neither is registered here: a borrowed head belongs to the method's
    objective."""

    glance: Optional[nn.Module] = None
    scene: Optional[nn.Module] = None


class UnlabeledDistill(Objective):
    """The method's own objective on the labeled batch, plus the label-free terms on the
    unlabeled one (each ``unl_*``, weighted by ``cfg.unlabeled_weight``)."""

    def __init__(self, inner: Objective, targets: UnlabeledTargets, model: Student, vocabulary: Vocabulary,
                 cfg: TrainConfig, heads: GlanceHeads = GlanceHeads()):
        super().__init__()
        self.inner, self.targets, self.cfg, self.heads = inner, targets, cfg, heads
        teacher_dim = targets.global_feats.shape[1]
        self.glance_proj = nn.Linear(model.cfg.text_dim, teacher_dim) if heads.glance is None else None
        self.cell_proj = nn.Linear(model.cfg.d_model, teacher_dim)
        verbs = role_inputs(vocabulary, vocabulary.verbs, model.cfg.max_roles)[1]
        self.register_buffer("verb_emb", torch.from_numpy(verbs), persistent=False)

    def forward(self, model: Student, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.inner(model, out, batch, verb_logits, noun_emb)
        u, c, t = batch.unlabeled, self.cfg, self.targets
        images = u.images.contiguous(memory_format=torch.channels_last) if c.channels_last else u.images
        memory, glance = model.encode(images)
        side = int(round(memory.shape[1] ** 0.5))
        cells = roi_pool(memory.reshape(memory.shape[0], side, side, -1), u.cells,
                         torch.ones(u.cells.shape[:2], dtype=torch.bool, device=memory.device))
        dev = glance.device
        glance_head = self.glance_proj if self.heads.glance is None else self.heads.glance
        scene_head = nn.Identity() if self.heads.scene is None else self.heads.scene
        terms = {
            "unl_glance": c.align_weight * cosine_alignment(glance_head(glance),
                                                            batch_rows(t.global_feats, u.index, dev)),
            "unl_cells": c.gaze_align_weight * cosine_alignment(self.cell_proj(cells),
                                                                batch_rows(t.cells, u.index, dev)),
        }
        if t.verb_logits is not None:
            logits = model.verb_scale() * glance @ self.verb_emb.T
            terms["unl_soft"] = c.soft_weight * soft_label_kl(logits, batch_rows(t.verb_logits, u.index, dev),
                                                              c.temperature)
        if t.scene is not None:
            terms["unl_scene"] = c.align_weight * knowledge_distance(
                scene_head(glance), batch_rows(t.scene, u.index, dev),
                shape=c.mipd.distance)
        losses.update({k: c.unlabeled_weight * v for k, v in terms.items()})
        return losses


def pool_targets(teacher: Any, pool: UnlabeledPool, vocabulary: Vocabulary, run: RunContext, soft_labels: bool,
                 scene_of: Optional[Callable[[np.ndarray], np.ndarray]]) -> tuple[UnlabeledTargets, str]:
    """The teacher's targets on the pool (its features computed once and cached) and the
    cache's key: its verb scores over ``vocabulary``'s (training) verbs where ``soft_labels``,
    and the scene knowledge ``scene_of`` maps its global features to, where given."""
    from .teacher_cache import folder_cache

    cache = folder_cache(teacher, pool.folder, pool.files, vocabulary, run.cache / "teacher", grid_cells,
                         progress=run.progress)
    logits = cache.teacher_verb_logits("the soft labels on unlabeled images") if soft_labels else None
    scene = None if scene_of is None else scene_of(cache.global_feats)
    return UnlabeledTargets(cache.global_feats, cache.regions, logits, scene), cache.key
