"""The open-vocabulary split: which verbs training may see, see rarely, or never see.

Verbs are shuffled with the seed and cut into unseen (the first ``unseen_frac``), rare
(the next ``rare_frac``) and seen (the rest). Training keeps every image of a seen verb,
at most ``rare_images`` images of a rare verb (the first ones in sorted image-name order,
so the choice does not depend on file order) and none of an unseen verb: not its images,
not its name, not its description. The split file is the one record both training and
evaluation read:

    {"seen": [...], "rare": [...], "unseen": [...],
     "params": {"unseen_frac": 0.2, "rare_frac": 0.2, "rare_images": 10, "seed": 0}}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, TypeVar

import numpy as np

from ..errors import DatasetError
from ..files import PathLike, read_json, regular_file, write_json

SPLITS = ("seen", "rare", "unseen")
SPLIT_FILE = "splits.json"  # a dataset folder's Ov split, beside its annotations
A = TypeVar("A")
log = logging.getLogger(__name__)


def build_split(verbs: Iterable[str], unseen_frac: float = 0.2, rare_frac: float = 0.2,
                rare_images: int = 10, seed: int = 0,
                accept: Optional[Callable[[dict], bool]] = None, max_tries: int = 1000,
                unseen: Optional[Iterable[str]] = None) -> dict:
    """Assign each verb to seen / rare / unseen, deterministically for a seed.

    ``accept`` lets a dataset demand more of a split (SynthSitu asks that every visual
    primitive of an unseen verb appear in some seen verb); shuffles are drawn from the
    same seeded generator until one is accepted. ``unseen`` fixes the unseen verbs (a
    published split): they are left out, and the rare verbs are drawn from the others.
    """
    verbs = sorted(set(verbs))
    if unseen is not None:
        unseen = sorted(set(unseen))
        unknown = sorted(set(unseen) - set(verbs))
        if unknown:
            raise DatasetError(f"unseen verbs not in the dataset: {unknown[:5]}")
        split = build_split([v for v in verbs if v not in unseen], 0.0,
                            rare_frac * len(verbs) / max(1, len(verbs) - len(unseen)), rare_images, seed)
        split["unseen"] = unseen
        split["params"] = {"unseen_verbs": len(unseen), "rare_frac": rare_frac, "rare_images": rare_images,
                           "seed": seed}
        return split
    if not 0 <= unseen_frac < 1 or not 0 <= rare_frac < 1 or unseen_frac + rare_frac >= 1:
        raise DatasetError(f"need 0 <= unseen_frac, rare_frac and unseen_frac + rare_frac < 1, "
                           f"got {unseen_frac} and {rare_frac}")
    if rare_images < 1:
        raise DatasetError(f"rare_images must be at least 1, got {rare_images}")
    n_unseen = int(round(len(verbs) * unseen_frac))
    n_rare = int(round(len(verbs) * rare_frac))
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        order = [verbs[i] for i in rng.permutation(len(verbs))]
        split = {"unseen": sorted(order[:n_unseen]), "rare": sorted(order[n_unseen:n_unseen + n_rare]),
                 "seen": sorted(order[n_unseen + n_rare:])}
        if accept is None or accept(split):
            split["params"] = {"unseen_frac": unseen_frac, "rare_frac": rare_frac,
                               "rare_images": rare_images, "seed": seed}
            return split
    raise DatasetError(f"no split of {len(verbs)} verbs met the dataset's condition in {max_tries} tries")


def split_of_dataset(space_verbs: Iterable[str], annotated: Iterable[str], unseen_frac: float = 0.2,
                     rare_frac: float = 0.2, rare_images: int = 10, seed: int = 0,
                     unseen: Optional[Iterable[str]] = None) -> dict:
    """The split of a dataset whose training annotations hold the ``annotated`` verbs: those
    (and a fixed ``unseen`` list) split as ``build_split`` does, and every other verb of the
    space unseen, since no training image can teach it."""
    annotated = set(annotated)
    unseen = list(unseen) if unseen is not None else None
    split = build_split(sorted(annotated) + (unseen or []), unseen_frac, rare_frac, rare_images, seed, unseen=unseen)
    never = set(space_verbs) - annotated
    if never:
        log.info("%d verbs of the space have no training image; they are unseen", len(never))
        split["unseen"] = sorted(set(split["unseen"]) | never)
    return split


def load_split(path_or_split: PathLike | Mapping) -> dict:
    raw = path_or_split if isinstance(path_or_split, Mapping) else read_json(path_or_split, "split file")
    where = "split" if isinstance(path_or_split, Mapping) else str(path_or_split)
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: a split file is an object with 'seen', 'rare', 'unseen' lists")
    for key in SPLITS:
        if not isinstance(raw.get(key), list) or not all(isinstance(v, str) for v in raw[key]):
            raise DatasetError(f"{where}: '{key}' must be a list of verb names")
    seen_twice = {v for a in SPLITS for b in SPLITS if a < b for v in set(raw[a]) & set(raw[b])}
    if seen_twice:
        raise DatasetError(f"{where}: verbs in more than one split: {sorted(seen_twice)[:5]}")
    params = raw.get("params", {})
    if not isinstance(params.get("rare_images", 10), int):
        raise DatasetError(f"{where}: params.rare_images must be an integer")
    return {"seen": list(raw["seen"]), "rare": list(raw["rare"]), "unseen": list(raw["unseen"]),
            "params": dict(params)}


def dataset_split(data_dir: PathLike, required: bool = True) -> Optional[dict]:
    """The Ov split of a dataset folder (its ``splits.json``); ``None`` where it has none and
    none is ``required`` (a dataset evaluated without seen / rare / unseen splits)."""
    path = Path(data_dir) / SPLIT_FILE
    if not required and not path.is_file():
        return None
    return load_split(path)


def write_split(path: PathLike, split: Mapping) -> None:
    write_json(path, dict(split))


def training_verbs(split: Mapping) -> list[str]:
    """The verbs a student may know about: seen and rare, never unseen."""
    return sorted(set(split["seen"]) | set(split["rare"]))


def apply_split(annotations: Mapping[str, A], split: Mapping) -> dict[str, A]:
    """Training view of annotations (objects with a ``verb``): drop unseen, cap rare."""
    unseen, rare = set(split["unseen"]), set(split["rare"])
    budget = int(split.get("params", {}).get("rare_images", 10))
    kept_rare: dict[str, int] = {}
    keep = set()
    for name in sorted(annotations):
        verb = annotations[name].verb
        if verb in unseen:
            continue
        if verb in rare:
            if kept_rare.get(verb, 0) >= budget:
                continue
            kept_rare[verb] = kept_rare.get(verb, 0) + 1
        keep.add(name)
    return {name: a for name, a in annotations.items() if name in keep}


# the file names of the authors' Ov-SWiG release (GitHub caicch/Ov-GSR): SWiG JSON subsets
OV_SWIG_FILES = {"train": "train_L10*.json", "unseen": "*_L10_unseen*.json", "rare": "*_L20_rare*.json"}


def split_from_files(folder: PathLike) -> dict:
    """The split of a published open-vocabulary set of SWiG files (Ov-SWiG's layout):
    unseen = the verbs of its unseen files, rare = the verbs of its rare files, seen = the
    other verbs of its training file; ``params.rare_images`` is the largest number of
    training images a rare verb has there, and ``params.training_images`` counts them all."""
    folder = Path(folder)
    found = {}
    for key, pattern in OV_SWIG_FILES.items():
        found[key] = sorted(folder.glob(pattern))
        if not found[key]:
            raise DatasetError(f"{folder}: no {key} file ({pattern}); expected the Ov-SWiG layout "
                               "train_L10*.json, {dev,test}_L10_unseen*.json, {dev,test}_L20_rare*.json")
    verbs_of = {key: {} for key in OV_SWIG_FILES}
    for key, paths in found.items():
        for path in paths:
            raw = read_json(path, "SWiG annotation file")
            if not isinstance(raw, Mapping):
                raise DatasetError(f"{path}: an annotation file is an object keyed by image name")
            for name, entry in raw.items():
                verb = entry.get("verb") if isinstance(entry, Mapping) else None
                if not isinstance(verb, str):
                    raise DatasetError(f"{path}: entry '{name}' has no verb")
                verbs_of[key][verb] = verbs_of[key].get(verb, 0) + 1
    counts = verbs_of["train"]
    unseen, rare = sorted(verbs_of["unseen"]), sorted(verbs_of["rare"])
    leaked = sorted(set(unseen) & set(counts))
    if leaked:
        raise DatasetError(f"{found['train'][0]}: holds images of unseen verbs {leaked[:5]}: not an "
                           "open-vocabulary training file")
    both = sorted(set(unseen) & set(rare))
    if both:
        raise DatasetError(f"{folder}: verbs both unseen and rare: {both[:5]}")
    seen = sorted(set(counts) - set(rare))
    return {"seen": seen, "rare": rare, "unseen": unseen,
            "params": {"source": [p.name for paths in found.values() for p in paths],
                       "rare_images": max([counts.get(v, 0) for v in rare], default=0) or 1,
                       "training_images": {v: counts.get(v, 0) for v in rare}}}


def read_verb_list(path: PathLike) -> list[str]:
    """Verbs from a text file (one per line, ``#`` comments) or a JSON list."""
    path = Path(path)
    if path.suffix == ".json":
        verbs = read_json(path, "verb list")
        if not isinstance(verbs, list) or not all(isinstance(v, str) for v in verbs):
            raise DatasetError(f"{path}: a verb list is a JSON list of strings")
        return verbs
    text = regular_file(path, "verb list", 1 << 24).read_text(encoding="utf-8")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
