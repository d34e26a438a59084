"""Teacher features computed once per (teacher, data, pre-processing) and memory-mapped.

For every training image: the teacher's global feature, its patch features pooled inside
each role's box (the whole image for a role without one), and its logits over the
*training* verbs (the seen-verb distribution the soft-label term distils). The cache key
hashes the teacher's weights id, the training annotations and image files (names, sizes,
modification times), the pre-processing and the verb list, so any change recomputes it.
The same features of a folder of unlabeled images are pooled in fixed cells instead of
role boxes (``folder_cache``).

A computation that stops (a kill, a full disk) resumes where it left off: the arrays are
written in place and ``progress.json`` says how many images are done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..data.hoi_pairs import UNLABELLED
from ..data.hoi_vocabulary import ROLES
from ..data.swig import SituDataset
from ..deploy.image import load_image
from ..errors import MipdEdgeError
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
    verb_logits: Optional[np.ndarray]  # (N, V) float32, over the training vocabulary's verbs; None: no image-text space
    verbs: list[str]
    logit_scale: float

    def teacher_verb_logits(self, needed_by: str) -> np.ndarray:
        """The teacher's verb logits, or a clear error where its image features have no text
        space to be scored in (BLIP-2)."""
        if self.verb_logits is None:
            raise MipdEdgeError(f"{needed_by} needs the teacher's verb scores, and this teacher's image features "
                                "are not in its text space (BLIP-2): distil with soft_weight: 0 in the "
                                "training config)")
        return self.verb_logits


def files_fingerprint(folder: Path, entries: dict[str, Any]) -> str:
    """A hash of image files (names, sizes, modification times) and what is recorded of each."""
    h = hashlib.sha256()
    for name, entry in entries.items():
        stat = (folder / name).stat()
        h.update(json.dumps([name, entry, stat.st_size, stat.st_mtime_ns]).encode())
    return h.hexdigest()


def dataset_fingerprint(dataset: SituDataset) -> str:
    return files_fingerprint(dataset.image_dir, {n: dataset.annotations[n].to_json() for n in dataset.names})


# one image to encode: its pixels (BGR) and its role boxes in the frame's role order (None: no box)
Sample = tuple[np.ndarray, list[Optional[Sequence[float]]]]


@dataclass(frozen=True)
class CachedImages:
    """The images a cache holds, whatever they come from (a dataset, unlabelled crops, a
    folder): their names, how to read one, a fingerprint of their files (part of the cache
    key) and how many regions each image's features are pooled in."""

    names: list[str]
    sample: Callable[[int], Sample]
    fingerprint: str
    regions: int


def teacher_cache(teacher: Teacher, dataset: SituDataset, vocabulary: Vocabulary, cache_root: Path,
                  max_roles: int = 6, batch_size: int = 32, progress: bool = True) -> TeacherCache:
    def sample(i: int) -> Sample:
        s = dataset[i]
        return s.image, [s.annotation.boxes.get(r) for r in vocabulary.frame(s.annotation.verb).roles[:max_roles]]

    images = CachedImages(dataset.names, sample, dataset_fingerprint(dataset), max_roles)
    return _cached_features(teacher, images, vocabulary, cache_root, batch_size, progress)


def unlabelled_cache(teacher: Teacher, pairs_dir: Path, vocabulary: Vocabulary, cache_root: Path,
                     max_roles: int = 6, batch_size: int = 32, progress: bool = True) -> TeacherCache:
    """The teacher's features of the unlabelled pairs' crops (``data.hoi_pairs``), the
    person as agent and the object as item; no verb is known of them."""
    folder = Path(pairs_dir) / UNLABELLED
    index = read_json(Path(pairs_dir) / f"{UNLABELLED}.json")
    names = sorted(index)

    def sample(i: int) -> Sample:
        entry = index[names[i]]
        return load_image(folder / names[i]), [entry["bb"].get(r) for r in ROLES[:max_roles]]

    images = CachedImages(names, sample, files_fingerprint(folder, {n: index[n] for n in names}), max_roles)
    return _cached_features(teacher, images, vocabulary, cache_root, batch_size, progress)


def folder_cache(teacher: Teacher, folder: Path, files: Sequence[Path], vocabulary: Vocabulary, cache_root: Path,
                 cells: Callable[[int, int], np.ndarray], batch_size: int = 32, progress: bool = True) -> TeacherCache:
    """The teacher's features of a folder of unlabeled images, its patches pooled in the
    regions ``cells(width, height)`` gives each image (pixel [x1, y1, x2, y2] boxes)."""
    names = [f.relative_to(folder).as_posix() for f in files]
    n_cells = len(cells(2, 2))

    def sample(i: int) -> Sample:
        image = load_image(files[i])
        return image, list(cells(image.shape[1], image.shape[0]))

    images = CachedImages(names, sample, files_fingerprint(folder, dict.fromkeys(names, n_cells)), n_cells)
    return _cached_features(teacher, images, vocabulary, cache_root, batch_size, progress)


def _cached_features(teacher: Teacher, images: CachedImages, vocabulary: Vocabulary, cache_root: Path,
                     batch_size: int, progress: bool) -> TeacherCache:
    key = hashlib.sha256(json.dumps([teacher.id, images.fingerprint, teacher.preprocess.to_json(),
                                     vocabulary.verbs, images.regions]).encode()).hexdigest()[:20]
    folder = cache_root / key
    if not (folder / "meta.json").is_file():
        _compute(teacher, images, vocabulary, folder, key, batch_size, progress)
    else:
        log.info("teacher features: reusing %s", folder)
    meta = read_json(folder / "meta.json")
    load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
    logits = load("verb_logits") if meta.get("image_text", True) else None
    return TeacherCache(key, meta["names"], load("global"), load("regions"), logits, meta["verbs"], meta["logit_scale"])


FLUSH_EVERY = 16  # batches between two progress records of a computation


@torch.no_grad()
def _compute(teacher: Teacher, images: CachedImages, vocabulary: Vocabulary, folder: Path, key: str,
             batch_size: int, progress: bool) -> None:
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    names, sample, max_roles = images.names, images.sample, images.regions
    n, d = len(names), teacher.dim
    record = folder / "progress.json"
    done = read_json(record)["done"] if record.is_file() else 0

    def array(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        path = folder / f"{name}.npy"
        if done:
            return np.load(path, mmap_mode="r+")
        return np.lib.format.open_memmap(path, "w+", dtype, shape)

    out_global = array("global", np.float16, (n, d))
    out_regions = array("regions", np.float16, (n, max_roles, d))
    out_logits = None
    if teacher.image_text:  # the teacher's verb distribution, where its image and text features can be compared
        verb_feats = teacher.encode_text([verb_text(vocabulary.frame(v)) for v in vocabulary.verbs]).float()
        out_logits = array("verb_logits", np.float32, (n, len(vocabulary.verbs)))
    arrays = [a for a in (out_global, out_regions, out_logits) if a is not None]
    if done:
        log.info("teacher features: resuming after %d of %d images in %s", done, n, folder)
    prep = teacher.preprocess
    starts = range(done, n, batch_size)
    for k, start in enumerate(progress_bar(starts, desc="teacher features", unit="batch", enabled=progress)):
        samples = [sample(i) for i in range(start, min(n, start + batch_size))]
        pixels, boxes, has_box = (
            [],
            np.zeros((len(samples), max_roles, 4), np.float32),
            np.zeros((len(samples), max_roles), bool),
        )
        for j, (image, role_boxes) in enumerate(samples):
            x, letterbox = prep(image)
            pixels.append(x)
            for r, box in enumerate(role_boxes):
                if box is not None:
                    boxes[j, r], has_box[j, r] = letterbox.boxes_to_input(np.asarray(box))[0], True
        global_feats, patches = teacher.encode_images(torch.from_numpy(np.stack(pixels)))
        regions = roi_pool(patches.float().cpu(), torch.from_numpy(boxes), torch.from_numpy(has_box))
        end = start + len(samples)
        out_global[start:end] = global_feats.float().cpu().numpy()
        out_regions[start:end] = regions.numpy()
        if out_logits is not None:
            out_logits[start:end] = (teacher.logit_scale * global_feats.float().cpu() @ verb_feats.T).numpy()
        if (k + 1) % FLUSH_EVERY == 0 and end < n:
            for arr in arrays:
                arr.flush()
            write_json(record, {"key": key, "done": end})
    for arr in arrays:
        arr.flush()
    seconds = time.perf_counter() - started
    write_json(folder / "meta.json", {"key": key, "teacher": teacher.id, "names": names, "verbs": vocabulary.verbs,
                                      "logit_scale": teacher.logit_scale, "image_text": teacher.image_text,
                                      "computed": {"images": n - done, "seconds": round(seconds, 2)}})
    record.unlink(missing_ok=True)
    log.info("teacher features for %d images in %.1f s -> %s", n - done, seconds, folder)
