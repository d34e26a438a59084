"""Teacher features computed once per (teacher, data, pre-processing) and memory-mapped.

For every training image: the teacher's global feature, its patch features pooled inside
each role's box (the whole image for a role without one), and its logits over the
*training* verbs (the seen-verb distribution the soft-label term distils). The cache key
hashes the teacher's weights id, the training annotations and image files (names, sizes,
modification times), the pre-processing and the verb list, so any change recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.swig import SituDataset
from ..files import read_json, write_json
from ..models.teacher import Teacher, roi_pool
from ..progress import progress_bar
from ..vocabulary import Vocabulary, verb_text

log = logging.getLogger(__name__)


@dataclass
class TeacherCache:
    key: str
    names: list[str]
    global_feats: np.ndarray  # (N, D) float16
    regions: np.ndarray  # (N, R, D) float16
    verb_logits: np.ndarray  # (N, V) float32, over the training vocabulary's verbs
    verbs: list[str]
    logit_scale: float


def dataset_fingerprint(dataset: SituDataset) -> str:
    h = hashlib.sha256()
    for name in dataset.names:
        stat = (dataset.image_dir / name).stat()
        h.update(json.dumps([name, dataset.annotations[name].to_json(), stat.st_size, stat.st_mtime_ns]).encode())
    return h.hexdigest()


def teacher_cache(teacher: Teacher, dataset: SituDataset, vocabulary: Vocabulary, cache_root: Path,
                  max_roles: int = 6, batch_size: int = 32, progress: bool = True) -> TeacherCache:
    verbs = vocabulary.verbs
    key = hashlib.sha256(json.dumps([teacher.id, dataset_fingerprint(dataset), teacher.preprocess.to_json(),
                                     verbs, max_roles]).encode()).hexdigest()[:20]
    folder = cache_root / key
    if not (folder / "meta.json").is_file():
        _compute(teacher, dataset, vocabulary, folder, key, max_roles, batch_size, progress)
    else:
        log.info("teacher features: reusing %s", folder)
    meta = read_json(folder / "meta.json")
    load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
    return TeacherCache(key, meta["names"], load("global"), load("regions"), load("verb_logits"), meta["verbs"],
                        meta["logit_scale"])


@torch.no_grad()
def _compute(teacher: Teacher, dataset: SituDataset, vocabulary: Vocabulary, folder: Path, key: str,
             max_roles: int, batch_size: int, progress: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, d = len(dataset), teacher.dim
    verb_feats = teacher.encode_text([verb_text(vocabulary.frame(v)) for v in vocabulary.verbs]).float()
    out_global = np.lib.format.open_memmap(folder / "global.npy", "w+", np.float16, (n, d))
    out_regions = np.lib.format.open_memmap(folder / "regions.npy", "w+", np.float16, (n, max_roles, d))
    out_logits = np.lib.format.open_memmap(folder / "verb_logits.npy", "w+", np.float32, (n, len(vocabulary.verbs)))
    prep = teacher.preprocess
    for start in progress_bar(range(0, n, batch_size), desc="teacher features", unit="batch", enabled=progress):
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        images, boxes, has_box = (
            [],
            np.zeros((len(samples), max_roles, 4), np.float32),
            np.zeros((len(samples), max_roles), bool),
        )
        for j, s in enumerate(samples):
            x, letterbox = prep(s.image)
            images.append(x)
            for r, role in enumerate(vocabulary.frame(s.annotation.verb).roles[:max_roles]):
                box = s.annotation.boxes.get(role)
                if box is not None:
                    boxes[j, r], has_box[j, r] = letterbox.boxes_to_input(np.asarray(box))[0], True
        global_feats, patches = teacher.encode_images(torch.from_numpy(np.stack(images)))
        regions = roi_pool(patches.float().cpu(), torch.from_numpy(boxes), torch.from_numpy(has_box))
        end = start + len(samples)
        out_global[start:end] = global_feats.float().cpu().numpy()
        out_regions[start:end] = regions.numpy()
        out_logits[start:end] = (teacher.logit_scale * global_feats.float().cpu() @ verb_feats.T).numpy()
    for arr in (out_global, out_regions, out_logits):
        arr.flush()
    write_json(folder / "meta.json", {"key": key, "teacher": teacher.id, "names": dataset.names,
                                      "verbs": vocabulary.verbs, "logit_scale": teacher.logit_scale})
    log.info("teacher features for %d images -> %s", n, folder)
