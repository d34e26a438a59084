"""Losses of grounded situation recognition and of distillation, each a small function.

GSR: verb cross-entropy over the training verbs, noun cross-entropy averaged over the
annotators (any of their nouns is right, so each pulls a little), box L1 + GIoU on the
roles that have a box, and a box-exists logit on every role. Distillation: cosine
alignment of features and a temperature-softened KL on the seen-verb distribution.

Terms averaged over a variable number of items (roles, boxes) divide by the count over
every rank's batch (``masked_mean``), as DETR divides by its ``num_boxes``: two ranks of 8
images then train as one process of 16, whatever each rank's share of roles.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .config import LossWeights
from .data import Batch


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise GIoU of two (..., 4) xyxy box tensors."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-7)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-7)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds, counted over every rank's batch. DDP averages
    gradients over the ranks, so each rank's sum is scaled by the world size. Every rank
    must call it (it is a collective), also with nothing to count."""
    mask = mask.bool()
    count = mask.sum().to(values.dtype).detach()
    scale = 1.0
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(count)
        scale = float(dist.get_world_size())
    return torch.where(mask, values, values.new_zeros(())).sum() * scale / count.clamp(min=1)


def annotator_cross_entropy(logits: torch.Tensor, nouns: torch.Tensor, valid: torch.Tensor,
                            smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of (B, R, N) logits averaged over each role's annotators (-1 = none),
    each with ``smoothing`` of its target spread uniformly over the N nouns."""
    log_p = logits.log_softmax(-1)
    picked = log_p.gather(-1, nouns.clamp(min=0))  # (B, R, A)
    given = (nouns >= 0).float()
    per_role = -(picked * given).sum(-1) / given.sum(-1).clamp(min=1)
    if smoothing:
        per_role = (1 - smoothing) * per_role - smoothing * log_p.mean(-1)
    return masked_mean(per_role, valid)


def gsr_losses(out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
               noun_logits: torch.Tensor, weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """``noun_logits`` is (B, R, N); targets come from the batch. Returns weighted terms."""
    valid = batch.role_mask > 0
    losses = {"verb": weights.verb * F.cross_entropy(verb_logits, batch.verbs, label_smoothing=weights.verb_smoothing),
              "noun": weights.noun * annotator_cross_entropy(noun_logits, batch.nouns, valid, weights.noun_smoothing)}

    grounded = valid & batch.has_box
    pred, gold = out["boxes"], batch.boxes  # (B, R, 4) cx, cy, w, h; a role without a box has a placeholder
    l1 = (pred - gold).abs().mean(-1)  # F.l1_loss's mean over the 4 coordinates
    giou = 1 - generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gold))
    losses["box_l1"] = weights.box_l1 * masked_mean(l1, grounded)
    losses["box_giou"] = weights.box_giou * masked_mean(giou, grounded)
    exists = F.binary_cross_entropy_with_logits(out["exists"], batch.has_box.float(), reduction="none")
    losses["exists"] = weights.exists * masked_mean(exists, valid)
    return losses


def cosine_alignment(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (1 - cos) between rows of ``x`` and ``target``, over rows where ``mask`` holds."""
    loss = 1 - F.cosine_similarity(x, target, dim=-1)
    if mask is None:
        return loss.mean()
    return masked_mean(loss, mask)


def knowledge_distance(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                       shape: str = "cosine") -> torch.Tensor:
    """How far features are from the knowledge they distil: ``cosine`` (1 - cos, ours) or
    ``l1`` (the mean absolute difference, the authors' shape), over rows where ``mask`` holds."""
    if shape == "cosine":
        return cosine_alignment(x, target, mask)
    loss = (x - target).abs().mean(-1)
    return loss.mean() if mask is None else masked_mean(loss, mask)


SCENE_NEGATIVE_WEIGHT, INSTANCE_NEGATIVE_WEIGHT = 5.0, 1.0  # the authors' hinge weights (caicch/Ov-GSR)


def negative_hinge(x: torch.Tensor, negatives: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of relu(cos(x, negative)) over the ``present`` (B, K) negatives (B, K, D) of rows
    ``x`` (B, D): the authors' margin-0 hinge, which pushes away only a negative on the
    same side of the origin."""
    cos = F.cosine_similarity(x[:, None], negatives, dim=-1)
    return (F.relu(cos) * present).sum() / present.sum().clamp(min=1)


def soft_label_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Hinton's KD: KL(teacher || student) at temperature T, scaled by T^2."""
    t = temperature
    return F.kl_div((student_logits / t).log_softmax(-1), (teacher_logits / t).log_softmax(-1),
                    log_target=True, reduction="batchmean") * t * t
