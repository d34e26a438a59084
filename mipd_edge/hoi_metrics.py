"""HICO-DET mAP: detection of (human, verb, object) triplets, per HOI class.

A detection is a human box, an object box, the object category, the verb and a score.
It is a true positive when its HOI class (verb, object category) matches a ground-truth
pair of the same class that is not matched yet and both boxes overlap that pair's boxes
with IoU >= 0.5; among several such pairs it takes the best-overlapping one (the
smaller of the two IoUs decides). Per class, detections of all images are ranked by
score and AP is the area under the interpolated precision-recall curve (``ap="voc"``,
as HICO-DET's official evaluation computes it; ``"voc11"`` is the 11-point variant many
open-source code bases report). IoUs use the inclusive-pixel convention (+1) of both.
mAP is the mean over classes with at least one ground-truth instance: Full (all), Rare /
Non-rare (fewer / at least 10 training instances), and Seen / Unseen under a zero-shot
split.

Predictions, as ``mipd-edge eval-hoi`` reads them: ``{file_name: [{"human_box": [x1, y1,
x2, y2], "object_box": [...], "object": category_id, "verb": verb_id, "score": s}, ...]}``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from .data.hico import HoiImage, HoiSpace
from .errors import DatasetError

IOU_THRESHOLD = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), inclusive pixels."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def average_precision(tp: np.ndarray, scores: np.ndarray, positives: int, ap: str = "voc") -> float:
    """AP of one class from its detections' true-positive flags and scores."""
    if positives == 0:
        raise ValueError("AP is undefined without ground truth")
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(tp[order])
    recall = hits / positives
    precision = hits / np.arange(1, len(hits) + 1)
    if ap == "voc11":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    if ap != "voc":
        raise DatasetError(f"ap must be 'voc' or 'voc11', got {ap!r}")
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # the precision envelope
    step = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[step] - r[step - 1]) * p[step]))


def parse_detections(entries: Any, space: HoiSpace, where: str) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    """One image's detections -> (class, human box, object box, score); pairs that are no
    class of the space are dropped, as no ground truth can ever match them."""
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: expected a list of detections, got {type(entries).__name__}")
    out = []
    for k, d in enumerate(entries):
        try:
            human, obj = np.asarray(d["human_box"], np.float64), np.asarray(d["object_box"], np.float64)
            cls, score = space.class_of(int(d["verb"]), int(d["object"])), float(d["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where} detection {k}: needs human_box, object_box, object, verb and score "
                               f"({type(exc).__name__}: {exc})") from exc
        if human.shape != (4,) or obj.shape != (4,) or not np.isfinite(score):
            raise DatasetError(f"{where} detection {k}: boxes must be [x1, y1, x2, y2] and the score finite")
        if cls is not None:
            out.append((cls, human, obj, score))
    return out


def match_image(gt: HoiImage, detections: Sequence[tuple[int, np.ndarray, np.ndarray, float]], space: HoiSpace,
                found: Mapping[int, list], counts: Mapping[int, int]) -> None:
    """Mark each detection of one image TP / FP (appending (score, tp) to ``found``)."""
    classes = gt.hoi_classes(space)
    for c in classes:
        if c is not None:
            counts[c] += 1
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(classes):
        if c is not None:
            by_class[c].append(i)
    for cls in {d[0] for d in detections}:
        dets = sorted((d for d in detections if d[0] == cls), key=lambda d: -d[3])
        pairs = by_class.get(cls, [])
        if not pairs:
            found[cls].extend((d[3], 0) for d in dets)
            continue
        gt_h = gt.boxes[[gt.pairs[i].subject for i in pairs]]
        gt_o = gt.boxes[[gt.pairs[i].object for i in pairs]]
        overlap = np.minimum(iou_matrix(np.stack([d[1] for d in dets]), gt_h),
                             iou_matrix(np.stack([d[2] for d in dets]), gt_o))
        used = np.zeros(len(pairs), bool)
        for k, d in enumerate(dets):
            candidates = np.where(~used & (overlap[k] >= IOU_THRESHOLD), overlap[k], -1.0)
            best = int(candidates.argmax())
            hit = candidates[best] >= IOU_THRESHOLD
            used[best] |= hit
            found[cls].append((d[3], int(hit)))


def evaluate_hoi(annotations: Sequence[HoiImage], predictions: Mapping[str, Any], space: HoiSpace,
                 rare: Iterable[int] = (), zero_shot: Optional[str] = None, ap: str = "voc",
                 max_per_image: Optional[int] = None) -> dict[str, Any]:
    """mAP Full / Rare / Non-rare (and Seen / Unseen under ``zero_shot``) in percent."""
    if not isinstance(predictions, Mapping):
        raise DatasetError(f"predictions must map file names to detection lists, got {type(predictions).__name__}")
    if ap not in ("voc", "voc11"):
        raise DatasetError(f"ap must be 'voc' or 'voc11', got {ap!r}")
    known = {a.file_name for a in annotations}
    stray = [n for n in predictions if n not in known]
    if stray:
        raise DatasetError(f"predictions for images not in the annotations: {stray[:3]}")
    found: dict[int, list] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    for image in annotations:
        dets = parse_detections(predictions.get(image.file_name, []), space, f"predictions[{image.file_name!r}]")
        if max_per_image is not None:
            dets = sorted(dets, key=lambda d: -d[3])[:max_per_image]
        match_image(image, dets, space, found, counts)
    per_class = {}
    for cls, positives in counts.items():
        hits = np.array([h for _, h in found[cls]], np.float64)
        scores = np.array([s for s, _ in found[cls]], np.float64)
        per_class[cls] = average_precision(hits, scores, positives, ap) if len(hits) else 0.0
    rare, unseen = frozenset(rare), space.unseen(zero_shot)

    def mean(classes) -> Optional[float]:
        values = [per_class[c] for c in classes if c in per_class]
        return 100.0 * float(np.mean(values)) if values else None

    result: dict[str, Any] = {"full": mean(per_class), "rare": mean(c for c in per_class if c in rare),
                              "non_rare": mean(c for c in per_class if c not in rare),
                              "classes": len(per_class), "ap": ap}
    if zero_shot is not None:
        result.update(zero_shot=zero_shot, unseen=mean(c for c in per_class if c in unseen),
                      seen=mean(c for c in per_class if c not in unseen))
    result["per_class"] = {space.class_name(c): 100.0 * v for c, v in sorted(per_class.items())}
    return result


__all__ = ["average_precision", "evaluate_hoi", "iou_matrix"]
