"""HICO-DET files: the HOI class space, per-image annotations, zero-shot splits.

The annotation format is the one the common open-source HOI code bases use
(``trainval_hico.json`` / ``test_hico.json``)::

    [{"file_name": "HICO_train2015_00000001.jpg",
      "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": 1}, ...],      # COCO ids
      "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 37}, ...]}, ...]

where ``subject_id`` / ``object_id`` index ``annotations`` and ``category_id`` of an HOI
is the 1-based verb id. An HOI class is a (verb, object category) pair; HICO-DET has 600
of them over 117 verbs and 80 objects (``hico_det_space``). Another dataset in the same
format (SynthSitu-HOI) ships its own ``hoi_space.json`` with the same fields.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import DatasetError
from ..files import PathLike, read_json, write_json
from . import hico_det_lists as lists

PERSON = 1  # the COCO category id of the subject of every HOI
RARE_BELOW = 10  # HICO-DET: a class with fewer training instances is rare


@dataclass(frozen=True)
class HoiSpace:
    """Verbs (1-based ids), object categories (their dataset ids) and the HOI classes as
    (verb id, object id) pairs in the dataset's order (HOI id = position + 1)."""

    name: str
    verbs: tuple[str, ...]
    objects: Mapping[int, str]
    classes: tuple[tuple[int, int], ...]
    zero_shot: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # name -> 0-based class indices
    rare: Optional[tuple[int, ...]] = None  # 0-based; None: count them in the training annotations
    definitions: Mapping[str, str] = field(default_factory=dict)  # verb -> text for the vocabulary

    def __post_init__(self):
        index = {}
        for i, (verb, obj) in enumerate(self.classes):
            if not 1 <= verb <= len(self.verbs) or obj not in self.objects:
                raise DatasetError(f"{self.name}: HOI class {i + 1} ({verb}, {obj}) names an unknown verb or object")
            if (verb, obj) in index:
                raise DatasetError(f"{self.name}: HOI class ({verb}, {obj}) is listed twice")
            index[(verb, obj)] = i
        for split, unseen in self.zero_shot.items():
            bad = [i for i in unseen if not 0 <= i < len(self.classes)]
            if bad:
                raise DatasetError(f"{self.name}: zero-shot split {split!r} has class indices out of range: {bad[:5]}")
        object.__setattr__(self, "_index", index)

    def class_of(self, verb: int, obj: int) -> Optional[int]:
        """The 0-based HOI class of a (verb id, object id) pair, or None if not a class."""
        return self._index.get((verb, obj))  # type: ignore[attr-defined]

    def unseen(self, split: Optional[str]) -> frozenset[int]:
        if split is None:
            return frozenset()
        if split not in self.zero_shot:
            raise DatasetError(f"{self.name} has no zero-shot split {split!r} (has: {sorted(self.zero_shot)})")
        return frozenset(self.zero_shot[split])

    def class_name(self, i: int) -> str:
        verb, obj = self.classes[i]
        return f"{self.verbs[verb - 1]} {self.objects[obj]}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verbs": [{"id": i + 1, "name": v, "definition": self.definitions.get(v, "")}
                                             for i, v in enumerate(self.verbs)],
                "objects": [{"id": k, "name": v} for k, v in self.objects.items()],
                "classes": [list(c) for c in self.classes],
                "zero_shot": {k: list(v) for k, v in self.zero_shot.items()},
                "rare": None if self.rare is None else list(self.rare)}

    @classmethod
    def from_json(cls, obj: Any, where: str = "hoi space") -> "HoiSpace":
        try:
            verbs = obj["verbs"]
            if [v["id"] for v in verbs] != list(range(1, len(verbs) + 1)):
                raise DatasetError(f"{where}: verb ids must be 1, 2, ... in order")
            return cls(name=str(obj.get("name", where)), verbs=tuple(v["name"] for v in verbs),
                       objects={int(o["id"]): str(o["name"]) for o in obj["objects"]},
                       classes=tuple((int(v), int(o)) for v, o in obj["classes"]),
                       zero_shot={k: tuple(int(i) for i in v) for k, v in obj.get("zero_shot", {}).items()},
                       rare=None if obj.get("rare") is None else tuple(int(i) for i in obj["rare"]),
                       definitions={v["name"]: v.get("definition", "") for v in verbs})
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: malformed HOI space ({type(exc).__name__}: {exc})") from exc

    def save(self, path: PathLike) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: PathLike) -> "HoiSpace":
        return cls.from_json(read_json(path), str(path))


def hico_det_space() -> HoiSpace:
    """HICO-DET's 117 verbs, 80 COCO objects, 600 classes, 138 rare classes and the
    published zero-shot splits (see ``hico_det_lists`` for the sources)."""
    objects = {coco: name.replace("_", " ") for coco, name in zip(lists.OBJECT_COCO_IDS, lists.OBJECTS)}
    classes = tuple((v + 1, lists.OBJECT_COCO_IDS[o]) for v, o in zip(lists.HOI_VERB, lists.HOI_OBJECT))
    verbs = tuple(v.replace("_", " ") for v in lists.VERBS)
    return HoiSpace("hico-det", verbs, objects, classes, dict(lists.ZERO_SHOT), tuple(lists.RARE))


@dataclass(frozen=True)
class HoiPair:
    """One annotated interaction: indices into the image's boxes and the 1-based verb id."""

    subject: int
    object: int
    verb: int


@dataclass(frozen=True)
class HoiImage:
    file_name: str
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 pixels
    categories: tuple[int, ...]  # object category id per box
    pairs: tuple[HoiPair, ...]

    def hoi_classes(self, space: HoiSpace) -> list[Optional[int]]:
        """The 0-based HOI class of each pair (None where the pair is no class of the space)."""
        return [space.class_of(p.verb, self.categories[p.object]) for p in self.pairs]


def read_hoi_annotations(path: PathLike, space: HoiSpace) -> list[HoiImage]:
    """Parse and check a HICO-DET style annotation file against ``space``."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of images, got {type(data).__name__}")
    images = []
    for n, entry in enumerate(data):
        where = f"{path} image {n}"
        try:
            name = entry["file_name"]
            boxes = np.asarray([a["bbox"] for a in entry["annotations"]], np.float32).reshape(-1, 4)
            categories = tuple(int(a["category_id"]) for a in entry["annotations"])
            pairs = tuple(HoiPair(int(h["subject_id"]), int(h["object_id"]), int(h["category_id"]))
                          for h in entry["hoi_annotation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: malformed entry ({type(exc).__name__}: {exc}); expected file_name, "
                               "annotations [{bbox, category_id}] and hoi_annotation "
                               "[{subject_id, object_id, category_id}]") from exc
        where = f"{path} image {name!r}"
        if not np.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
            raise DatasetError(f"{where}: boxes must be finite [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1")
        unknown = sorted({c for c in categories if c not in space.objects})
        if unknown:
            raise DatasetError(f"{where}: object categories {unknown} are not in {space.name}")
        for p in pairs:
            if not (0 <= p.subject < len(categories) and 0 <= p.object < len(categories)):
                raise DatasetError(f"{where}: subject_id / object_id {p.subject} / {p.object} out of range "
                                   f"({len(categories)} boxes)")
            if not 1 <= p.verb <= len(space.verbs):
                raise DatasetError(f"{where}: verb id {p.verb} is not in 1..{len(space.verbs)}")
        images.append(HoiImage(str(name), boxes, categories, pairs))
    return images


def class_counts(images: Sequence[HoiImage], space: HoiSpace) -> Counter:
    """Instances per 0-based HOI class."""
    return Counter(c for image in images for c in image.hoi_classes(space) if c is not None)


def rare_classes(space: HoiSpace, train: Optional[Sequence[HoiImage]] = None) -> frozenset[int]:
    """HICO-DET's published rare set, else classes with fewer than 10 training instances."""
    if space.rare is not None:
        return frozenset(space.rare)
    if train is None:
        raise DatasetError(f"{space.name} lists no rare classes: pass the training annotations to count them")
    counts = class_counts(train, space)
    return frozenset(i for i in range(len(space.classes)) if counts[i] < RARE_BELOW)


def drop_unseen(images: Sequence[HoiImage], space: HoiSpace, split: Optional[str]) -> list[HoiImage]:
    """Training images with no trace of the split's unseen classes.

    As GEN-VLKT does, a human-object pair that carries an unseen class loses all its
    labels (its other verbs would teach the unseen combination's boxes), and an image left
    with no pair is dropped. An image that keeps other pairs keeps the unseen pair's
    pixels, unlabelled: that is the published protocol, so numbers stay comparable, and
    the interaction map learns such a pair as background, which probably costs some unseen
    recall (not measured).
    """
    return drop_classes(images, space, space.unseen(split))


def drop_classes(images: Sequence[HoiImage], space: HoiSpace, dropped: frozenset[int]) -> list[HoiImage]:
    """Images without any pair that carries one of the ``dropped`` classes (such a pair loses
    all its labels) and without images left with no pair, as ``drop_unseen`` describes."""
    if not dropped:
        return list(images)
    out = []
    for image in images:
        classes = image.hoi_classes(space)
        banned = {(p.subject, p.object) for p, c in zip(image.pairs, classes) if c in dropped}
        kept = tuple(p for p in image.pairs if (p.subject, p.object) not in banned)
        if kept:
            out.append(HoiImage(image.file_name, image.boxes, image.categories, kept))
    return out


def classes_of_verbs(space: HoiSpace, verbs: Sequence[int]) -> frozenset[int]:
    """The 0-based classes of the given verb ids."""
    verbs = set(verbs)
    return frozenset(i for i, (v, _) in enumerate(space.classes) if v in verbs)


def seen_verbs(space: HoiSpace, split: Optional[str]) -> list[int]:
    """Verb ids training may name: those of at least one seen class. Under unseen_verb the
    20 unseen verbs are not even in the training vocabulary (DESIGN section 4)."""
    unseen = space.unseen(split)
    return sorted({space.classes[i][0] for i in range(len(space.classes)) if i not in unseen})


def image_dir(folder: PathLike, split: str) -> Path:
    """Where a split's images are: ``images/train2015`` or ``images/test2015`` as HICO-DET
    unpacks, else ``images/`` (SynthSitu-HOI)."""
    folder = Path(folder)
    nested = folder / "images" / ("test2015" if split == "test" else "train2015")
    return nested if nested.is_dir() else folder / "images"


def split_annotations(folder: PathLike, split: str) -> list[HoiImage]:
    """The annotated images of a split (``trainval`` or ``test``) of an HOI dataset folder."""
    if split not in ("trainval", "test"):
        raise DatasetError(f"an HOI dataset's splits are trainval and test, got {split!r}")
    return read_hoi_annotations(Path(folder) / f"{split}_hico.json", find_space(folder))


def find_space(folder: PathLike) -> HoiSpace:
    """The ``hoi_space.json`` beside a dataset's annotations, else HICO-DET's."""
    path = Path(folder) / "hoi_space.json"
    return HoiSpace.load(path) if path.is_file() else hico_det_space()


DEV_FRACTION = 0.1  # held-out training images: checkpoint selection and INT8 accuracy control


def training_images(data_dir: PathLike, zero_shot: Optional[str]) -> tuple[HoiSpace, list[HoiImage]]:
    """A dataset's HOI space and its trainval images with every trace of the split's unseen classes removed."""
    space = find_space(data_dir)
    return space, drop_unseen(read_hoi_annotations(Path(data_dir) / "trainval_hico.json", space), space, zero_shot)


def dev_holdout(images: Sequence[HoiImage], seed: int) -> tuple[list[HoiImage], list[HoiImage]]:
    """(train, dev): the training images an HOI student of training seed ``seed`` learnt from,
    and those it was selected on (the same hold-out wherever it is needed again)."""
    order = np.random.default_rng([seed, 5]).permutation(len(images))
    n_dev = max(1, int(len(images) * DEV_FRACTION))
    return [images[i] for i in sorted(order[n_dev:])], [images[i] for i in sorted(order[:n_dev])]
