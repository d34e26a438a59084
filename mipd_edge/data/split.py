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

from typing import Callable, Iterable, Mapping, Optional, TypeVar

import numpy as np

from ..errors import DatasetError
from ..files import PathLike, read_json, write_json

SPLITS = ("seen", "rare", "unseen")
A = TypeVar("A")


def build_split(verbs: Iterable[str], unseen_frac: float = 0.2, rare_frac: float = 0.2,
                rare_images: int = 10, seed: int = 0,
                accept: Optional[Callable[[dict], bool]] = None, max_tries: int = 1000) -> dict:
    """Assign each verb to seen / rare / unseen, deterministically for a seed.

    ``accept`` lets a dataset demand more of a split (SynthSitu asks that every visual
    primitive of an unseen verb appear in some seen verb); shuffles are drawn from the
    same seeded generator until one is accepted.
    """
    verbs = sorted(set(verbs))
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


def write_split(path: PathLike, split: Mapping) -> None:
    write_json(path, dict(split))


def split_of(verb: str, split: Mapping) -> Optional[str]:
    for name in SPLITS:
        if verb in split[name]:
            return name
    return None


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
