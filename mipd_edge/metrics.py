"""Grounded situation recognition metrics, SWiG conventions (DESIGN section 5).

Per image, over the roles of the gold verb's frame: a role is *value-correct* when its
predicted noun is one of the annotators' nouns ("" included), *grounded-correct* when it
is also box-correct: both boxes absent, or both present with IoU >= 0.5 (continuous
coordinates, no +1). ``value`` / ``grnd_value`` are the means over roles, ``*_all`` whether
every role is right. Under top-1 / top-5 an image's role scores count only if the gold
verb is among the first 1 / 5 predicted verbs, using the roles predicted for that verb;
under gt-verb, the roles predicted for the gold verb. Scores are averaged per verb first,
then over verbs, so that frequent verbs do not drown rare ones. An annotated image with
no prediction scores zero; a role the prediction lacks is wrong.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .data.split import SPLITS, load_split
from .data.swig import Annotation, SituSpace
from .errors import DatasetError
from .situation import Box, RoleValue, Situation
from .tables import render_table

log = logging.getLogger(__name__)

ROLE_METRICS = ("value", "value_all", "grnd_value", "grnd_value_all")
SETTINGS = ("top1", "top5", "gt_verb")


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] boxes in continuous coordinates."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_correct(pred: Box, gold: Box) -> bool:
    if gold is None or pred is None:
        return gold is None and pred is None
    return box_iou(pred, gold) >= 0.5


def role_scores(annotation: Annotation, roles: Mapping[str, RoleValue], order: Sequence[str]) -> dict[str, float]:
    """value / value_all / grnd_value / grnd_value_all of one image for one set of roles."""
    value = grounded = 0
    for role in order:
        pred = roles.get(role)
        if pred is None or pred.noun not in annotation.nouns(role):
            continue
        value += 1
        grounded += box_correct(pred.box, annotation.boxes.get(role))
    n = len(order)
    return {"value": value / n, "value_all": float(value == n),
            "grnd_value": grounded / n, "grnd_value_all": float(grounded == n)}


def image_scores(
    annotation: Annotation, prediction: Optional[Situation], order: Sequence[str]
) -> dict[str, dict[str, float]]:
    zero = dict.fromkeys(ROLE_METRICS, 0.0)
    scores: dict[str, dict[str, float]] = {"top1": {"verb": 0.0, **zero}, "top5": {"verb": 0.0, **zero},
                                           "gt_verb": dict(zero)}
    if prediction is None:
        return scores
    ranked = []
    for candidate in prediction.candidates:
        if candidate.verb not in (c.verb for c in ranked):
            ranked.append(candidate)
    for setting, k in (("top1", 1), ("top5", 5)):
        for candidate in ranked[:k]:
            if candidate.verb == annotation.verb:
                scores[setting] = {"verb": 1.0, **role_scores(annotation, candidate.roles, order)}
                break
    if prediction.gt_verb_roles is not None:
        scores["gt_verb"] = role_scores(annotation, prediction.gt_verb_roles, order)
    return scores


def evaluate(annotations: Mapping[str, Annotation], space: SituSpace,
             predictions: Mapping[str, Any], splits: Optional[Mapping] = None) -> dict:
    """Metrics (percent, 0-100) for ``all`` and, with ``splits``, for seen / rare / unseen."""
    return evaluate_images(annotations, space, predictions, splits)[0]


def evaluate_images(annotations: Mapping[str, Annotation], space: SituSpace, predictions: Mapping[str, Any],
                    splits: Optional[Mapping] = None) -> tuple[dict, dict[str, dict[str, dict[str, float]]]]:
    """``evaluate``'s metrics, and every annotated image's scores (``image_scores``) that they
    average, keyed by image name: what a paired comparison of two models resamples."""
    parsed = {name: p if isinstance(p, Situation) else Situation.from_json(p, f"prediction for '{name}'")
              for name, p in predictions.items()}
    extra = set(parsed) - set(annotations)
    if extra:
        log.warning("%d predictions are for images that are not annotated (ignored), e.g. %s",
                    len(extra), sorted(extra)[:3])
    with_gt = all(p.gt_verb_roles is not None for p in parsed.values()) and bool(parsed)

    scores: dict[str, dict[str, dict[str, float]]] = {}
    per_verb: dict[str, list[dict]] = defaultdict(list)
    for name, ann in annotations.items():
        frame = space.frames.get(ann.verb)
        if frame is None:
            raise DatasetError(f"annotation '{name}': verb '{ann.verb}' is not in the space")
        scores[name] = image_scores(ann, parsed.get(name), frame.roles)
        per_verb[ann.verb].append(scores[name])

    sections = {"all": sorted(per_verb)}
    if splits is not None:
        splits = load_split(splits)
        sections.update({s: sorted(v for v in splits[s] if v in per_verb) for s in SPLITS})
    return {name: _average(per_verb, verbs, with_gt) for name, verbs in sections.items()}, scores


def paired_interval(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                    verb_of: Mapping[str, str], keys: Sequence[str], resamples: int = 2000,
                    seed: int = 0) -> dict[str, list[float]]:
    """The 95% bootstrap interval of ``after - before`` (percent points) for each of ``keys``,
    averaged per verb then over verbs as the metrics are. Both are scores of the same images
    (name -> key -> 0..1), so the difference is paired, and images are resampled within their
    verb: the interval is that of the metric's own average, not of a pooled one."""
    rng = np.random.default_rng(seed)
    by_verb: dict[str, list[str]] = defaultdict(list)
    for name in before:
        by_verb[verb_of[name]].append(name)
    total = np.zeros((resamples, len(keys)))
    for names in by_verb.values():
        diff = np.array([[after[n][k] - before[n][k] for k in keys] for n in names])
        picks = rng.integers(0, len(names), size=(resamples, len(names)))
        total += diff[picks].mean(axis=1)
    means = 100.0 * total / max(len(by_verb), 1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return {k: [round(float(lo), 3), round(float(hi), 3)] for k, lo, hi in zip(keys, low, high)}


def _average(per_verb: Mapping[str, list[dict]], verbs: Sequence[str], with_gt: bool) -> dict:
    settings = SETTINGS if with_gt else SETTINGS[:2]
    out: dict[str, Any] = {"images": sum(len(per_verb[v]) for v in verbs), "verbs": len(verbs)}
    for setting in settings:
        keys = ROLE_METRICS if setting == "gt_verb" else ("verb",) + ROLE_METRICS
        out[setting] = {}
        for key in keys:
            verb_means = [sum(s[setting][key] for s in per_verb[v]) / len(per_verb[v]) for v in verbs]
            out[setting][key] = 100.0 * sum(verb_means) / len(verb_means) if verb_means else 0.0
    return out


def format_table(metrics: Mapping[str, Mapping]) -> str:
    """A plain-text table: one row per split and setting, one column per metric."""
    header = ["split", "setting", "images", "verb", "value", "value-all", "grnd-value", "grnd-value-all"]
    rows = [header]
    for split, section in metrics.items():
        for setting in SETTINGS:
            if setting not in section:
                continue
            m = section[setting]
            rows.append([split, setting, str(section.get("images", "")),
                         f"{m['verb']:.2f}" if "verb" in m else "-"]
                        + [f"{m[k]:.2f}" for k in ROLE_METRICS])
    return render_table(rows, left=2)


def format_comparison(results: Mapping[str, Mapping], setting: str = "top1", markdown: bool = False) -> str:
    """Models side by side: verb and grnd-value per split (top-1 unless told), verb@5 too."""
    splits = [s for s in ("all", "seen", "rare", "unseen") if all(s in m for m in results.values())]
    header = ["model"] + [f"{s} {k}" for s in splits for k in ("verb", "verb@5", "grnd")]
    rows = [header]
    for name, m in results.items():
        rows.append([name] + [f"{m[s][key][metric]:.1f}" for s in splits
                              for key, metric in ((setting, "verb"), ("top5", "verb"), (setting, "grnd_value"))])
    return render_table(rows, markdown)
