"""HICO-DET mAP exactly as the official evaluation computes it (the HICO-DET authors' MATLAB
code, GitHub ywchao/ho-rcnn, and its Python ports in QPIC and GEN-VLKT).

A detection is a human box, an object box, the object category, the verb and a score.
Per HOI class (verb, object category), the detections of all test images are taken in
score order (ties in image order); each takes the ground-truth pair of its class in its
image with the highest overlap, the smaller of the human and object IoUs (inclusive
pixels, +1), the first of equal ones. It is a true positive if that overlap is >= 0.5
and the pair is still free, which takes it; otherwise a false positive: a detection whose
best pair is taken does not fall back to the next one. AP is 11-point interpolated (the
mean over recall thresholds 0, 0.1, ..., 1 of the highest precision at that recall or
beyond); ``ap="auc"``, the area under the precision envelope, is offered as a
non-official alternative. ``mode="ko"`` is the official known-object setting: per class,
only the images whose annotations contain that class's object category. mAP is the mean
over classes with at least one ground-truth pair: Full, Rare / Non-rare (fewer / at least
10 training instances), and Seen / Unseen under a zero-shot split; the mean max recall
(the recall of all a class's detections) is reported beside it, as the ports print it.

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


AP_KINDS = ("11point", "auc")  # the official one first
MODES = ("def", "ko")


def average_precision(tp: np.ndarray, scores: np.ndarray, positives: int, ap: str = "11point") -> float:
    """AP of one class from its detections' true-positive flags and scores, in score order
    (a stable sort: equal scores keep the order they were given in)."""
    if positives == 0:
        raise ValueError("AP is undefined without ground truth")
    if ap not in AP_KINDS:
        raise DatasetError(f"ap must be one of {AP_KINDS}, got {ap!r}")
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(tp[order])
    recall = hits / positives
    precision = hits / np.arange(1, len(hits) + 1)
    if ap == "11point":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
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
                found: Mapping[int, list], counts: Mapping[int, int], mode: str = "def") -> None:
    """Mark each detection of one image TP / FP (appending (score, tp) to ``found``); under
    ``ko`` a class's detections count only if the image's annotations have its object."""
    classes = gt.hoi_classes(space)
    if mode == "ko":
        present = {gt.categories[p.object] for p in gt.pairs}
        detections = [d for d in detections if space.classes[d[0]][1] in present]
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
            best = int(overlap[k].argmax())  # the first of the highest overlaps, taken or not
            hit = overlap[k, best] >= IOU_THRESHOLD and not used[best]
            used[best] |= hit
            found[cls].append((d[3], int(hit)))


def evaluate_hoi(annotations: Sequence[HoiImage], predictions: Mapping[str, Any], space: HoiSpace,
                 rare: Iterable[int] = (), zero_shot: Optional[str] = None, ap: str = "11point",
                 max_per_image: Optional[int] = None, mode: str = "def") -> dict[str, Any]:
    """mAP Full / Rare / Non-rare (and Seen / Unseen under ``zero_shot``) in percent, and
    the mean max recall of each."""
    if not isinstance(predictions, Mapping):
        raise DatasetError(f"predictions must map file names to detection lists, got {type(predictions).__name__}")
    if ap not in AP_KINDS:
        raise DatasetError(f"ap must be one of {AP_KINDS}, got {ap!r}")
    if mode not in MODES:
        raise DatasetError(f"mode must be one of {MODES} (default or known object), got {mode!r}")
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
        match_image(image, dets, space, found, counts, mode)
    per_class, max_recall = {}, {}
    for cls, positives in counts.items():
        hits = np.array([h for _, h in found[cls]], np.float64)
        scores = np.array([s for s, _ in found[cls]], np.float64)
        per_class[cls] = average_precision(hits, scores, positives, ap) if len(hits) else 0.0
        max_recall[cls] = hits.sum() / positives
    rare, unseen = frozenset(rare), space.unseen(zero_shot)
    groups = {"full": list(per_class), "rare": [c for c in per_class if c in rare],
              "non_rare": [c for c in per_class if c not in rare]}
    if zero_shot is not None:
        groups.update(unseen=[c for c in per_class if c in unseen], seen=[c for c in per_class if c not in unseen])

    def mean(values: Mapping[int, float], classes: list[int]) -> Optional[float]:
        return 100.0 * float(np.mean([values[c] for c in classes])) if classes else None

    result: dict[str, Any] = {name: mean(per_class, classes) for name, classes in groups.items()}
    result.update(classes=len(per_class), ap=ap, mode=mode,
                  mean_max_recall={name: mean(max_recall, classes) for name, classes in groups.items()})
    if zero_shot is not None:
        result["zero_shot"] = zero_shot
    result["per_class"] = {space.class_name(c): 100.0 * v for c, v in sorted(per_class.items())}
    return result


def image_matches(annotations: Sequence[HoiImage], predictions: Mapping[str, Any], space: HoiSpace,
                  mode: str = "def") -> list[dict[int, tuple[np.ndarray, np.ndarray, int]]]:
    """Each image's part of the mAP, as ``evaluate_hoi`` matches it: class -> (detection scores,
    true-positive flags, ground-truth pairs). Matching never looks past an image, so a resample
    of images is scored from these parts alone (``map_of_images``)."""
    out = []
    for image in annotations:
        found: dict[int, list] = defaultdict(list)
        counts: dict[int, int] = defaultdict(int)
        dets = parse_detections(predictions.get(image.file_name, []), space, f"predictions[{image.file_name!r}]")
        match_image(image, dets, space, found, counts, mode)
        out.append({c: (np.array([d for d, _ in found[c]], np.float64), np.array([h for _, h in found[c]], np.float64),
                        counts.get(c, 0)) for c in set(found) | set(counts)})
    return out


def map_of_images(parts: Sequence[Mapping[int, tuple[np.ndarray, np.ndarray, int]]], picks: Iterable[int],
                  ap: str = "11point") -> float:
    """Full mAP (percent) of the images ``picks`` (indices into ``parts``, repeats allowed)."""
    scores: dict[int, list] = defaultdict(list)
    hits: dict[int, list] = defaultdict(list)
    positives: dict[int, int] = defaultdict(int)
    for i in picks:
        for cls, (s, h, n) in parts[i].items():
            scores[cls].append(s)
            hits[cls].append(h)
            positives[cls] += n
    aps = [average_precision(np.concatenate(hits[c]), np.concatenate(scores[c]), n, ap)
           if sum(len(h) for h in hits[c]) else 0.0 for c, n in positives.items() if n]
    return 100.0 * float(np.mean(aps)) if aps else 0.0


def paired_map_interval(before: Sequence[Mapping], after: Sequence[Mapping], resamples: int = 1000,
                        seed: int = 0) -> list[float]:
    """The 95% bootstrap interval of ``after - before`` full mAP (points): the same images
    (``image_matches`` of each) resampled for both, so the difference is paired."""
    rng = np.random.default_rng(seed)
    n = len(before)
    diffs = [map_of_images(after, picks) - map_of_images(before, picks)
             for picks in rng.integers(0, n, size=(resamples, n))]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


__all__ = ["AP_KINDS", "MODES", "average_precision", "evaluate_hoi", "image_matches", "iou_matrix", "map_of_images",
           "paired_map_interval"]
