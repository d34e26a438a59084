"""SWiG / imSitu files: the verb-noun space, per-image annotations, and a torch-free dataset.

The formats, exactly as SWiG ships them:

* ``imsitu_space.json``: ``{"verbs": {verb: {"framenet", "abstract", "def", "order": [role, ...],
  "roles": {role: {"framenet", "def"}}}}, "nouns": {id: {"gloss": [..], "def"}}}``
* ``train.json`` / ``dev.json`` / ``test.json``: ``{image: {"verb", "height", "width",
  "bb": {role: [x1, y1, x2, y2]}, "frames": [{role: noun}, x3]}}``, where ``""`` is the
  empty noun and ``[-1, -1, -1, -1]`` means the role has no box.

Every check names the file and the entry, because a dataset with 100k images is only
fixable when the message says where to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from ..deploy.image import load_image
from ..errors import DatasetError, InvalidImageError
from ..files import PathLike, read_json, write_json
from ..situation import Box, Frame, Noun, parse_box

SPACE_FILES = ("space.json", "imsitu_space.json")
IMAGE_DIRS = ("images", "images_512", "of500_images_resized")


@dataclass(frozen=True)
class SituSpace:
    """The verbs (with their frames) and nouns a dataset is annotated with."""

    frames: Mapping[str, Frame]
    nouns: Mapping[str, Noun]

    def to_json(self) -> dict[str, Any]:
        verbs = {}
        for f in self.frames.values():
            verbs[f.verb] = {
                "framenet": f.framenet, "abstract": f.abstract, "def": f.definition,
                "order": list(f.roles),
                "roles": {r: {"framenet": r.capitalize(), "def": f.role_definitions.get(r, "")}
                          for r in f.roles},
            }
        nouns = {n.id: {"gloss": list(n.glosses), "def": n.definition} for n in self.nouns.values()}
        return {"verbs": verbs, "nouns": nouns}


@dataclass(frozen=True)
class Annotation:
    """The gold situation of one image: verb, one box per role, three annotators' nouns."""

    image: str
    verb: str
    width: int
    height: int
    boxes: Mapping[str, Box]
    frames: tuple[Mapping[str, str], ...]

    def nouns(self, role: str) -> set[str]:
        """Every noun any annotator gave the role (a prediction is right if it is one of them)."""
        return {f[role] for f in self.frames if role in f}

    def to_json(self) -> dict[str, Any]:
        return {"verb": self.verb, "height": self.height, "width": self.width,
                "bb": {r: (list(b) if b is not None else [-1, -1, -1, -1]) for r, b in self.boxes.items()},
                "frames": [dict(f) for f in self.frames]}


def read_space(path: PathLike) -> SituSpace:
    raw = read_json(path, "space file")
    where = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("verbs"), dict) or not isinstance(raw.get("nouns"), dict):
        raise DatasetError(f"{where}: a space file is an object with 'verbs' and 'nouns' objects")
    frames = {}
    for verb, v in raw["verbs"].items():
        at = f"{where}: verb '{verb}'"
        if not isinstance(v, dict) or not isinstance(v.get("order"), list) or not isinstance(v.get("roles"), dict):
            raise DatasetError(f"{at}: needs 'order' (a list of roles) and 'roles' (an object)")
        order = tuple(v["order"])
        if not all(isinstance(r, str) for r in order) or len(set(order)) != len(order):
            raise DatasetError(f"{at}: 'order' must list distinct role names")
        missing = [r for r in order if r not in v["roles"]]
        if missing:
            raise DatasetError(f"{at}: roles {missing} are in 'order' but not defined in 'roles'")
        role_defs = {r: str((v["roles"][r] or {}).get("def", "")) for r in order}
        frames[verb] = Frame(verb=verb, roles=order, role_definitions=role_defs,
                             definition=str(v.get("def", "")), abstract=str(v.get("abstract", "")),
                             framenet=str(v.get("framenet", "")))
    nouns = {}
    for nid, n in raw["nouns"].items():
        if not isinstance(n, dict) or not isinstance(n.get("gloss", []), list):
            raise DatasetError(f"{where}: noun '{nid}' needs 'gloss' (a list) and 'def'")
        nouns[nid] = Noun(id=nid, glosses=tuple(str(g) for g in n.get("gloss", [])),
                          definition=str(n.get("def", "")))
    return SituSpace(frames=frames, nouns=nouns)


def write_space(path: PathLike, space: SituSpace) -> None:
    write_json(path, space.to_json())


def read_annotations(path: PathLike, space: SituSpace) -> dict[str, Annotation]:
    """Read and validate a SWiG annotation file against the space; keys keep file order."""
    raw = read_json(path, "annotation file")
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: an annotation file is an object keyed by image name")
    return {name: parse_annotation(name, entry, space, str(path)) for name, entry in raw.items()}


def parse_annotation(name: str, entry: Any, space: SituSpace, where: str = "annotations") -> Annotation:
    at = f"{where}: entry '{name}'"
    if not isinstance(entry, dict):
        raise DatasetError(f"{at}: expected an object")
    for key in ("verb", "height", "width", "frames"):
        if key not in entry:
            raise DatasetError(f"{at}: missing '{key}'")
    verb = entry["verb"]
    frame = space.frames.get(verb)
    if frame is None:
        raise DatasetError(f"{at}: unknown verb {verb!r} (not in the space)")
    width, height = entry["width"], entry["height"]
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise DatasetError(f"{at}: 'width' and 'height' must be positive integers")
    bb = entry.get("bb", {})
    if not isinstance(bb, dict):
        raise DatasetError(f"{at}: 'bb' must be an object role -> box")
    unknown = [r for r in bb if r not in frame.roles]
    if unknown:
        raise DatasetError(f"{at}: box for roles {unknown} that verb '{verb}' does not have")
    boxes = {r: parse_box(bb.get(r), f"{at}: box of '{r}'") for r in frame.roles}
    frames = entry["frames"]
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{at}: 'frames' must be a non-empty list of role -> noun objects")
    for i, f in enumerate(frames):
        if not isinstance(f, dict):
            raise DatasetError(f"{at}: frame {i} is not an object")
        if set(f) != set(frame.roles):
            raise DatasetError(f"{at}: frame {i} has roles {sorted(f)}, verb '{verb}' has {sorted(frame.roles)}")
        for role, noun in f.items():
            if not isinstance(noun, str) or (noun and noun not in space.nouns):
                raise DatasetError(f"{at}: frame {i} role '{role}' has unknown noun {noun!r}")
    return Annotation(image=name, verb=verb, width=width, height=height, boxes=boxes,
                      frames=tuple(dict(f) for f in frames))


def write_annotations(path: PathLike, annotations: Mapping[str, Annotation]) -> None:
    write_json(path, {name: a.to_json() for name, a in annotations.items()}, indent=None)


def find_space(root: PathLike) -> Path:
    root = Path(root)
    for name in SPACE_FILES:
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: no space file (looked for {', '.join(SPACE_FILES)})")


def find_image_dir(root: PathLike) -> Path:
    root = Path(root)
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root}: no image folder (looked for {', '.join(IMAGE_DIRS)})")


@dataclass(frozen=True)
class Sample:
    name: str
    image: np.ndarray  # BGR uint8 (H, W, 3), as OpenCV decodes it
    annotation: Annotation


class SituDataset(Sequence[Sample]):
    """Images and annotations of one split of a SWiG-format dataset, without torch.

    With ``ov_split`` (a split dict or file, see ``mipd_edge.data.split``) and
    ``split="train"``, unseen verbs are dropped and rare verbs cut to their image budget,
    which is the only way training should ever read its data.
    """

    def __init__(self, root: PathLike, split: str, ov_split: Optional[Mapping | PathLike] = None,
                 image_dir: Optional[PathLike] = None, space: Optional[SituSpace] = None):
        from .split import apply_split, load_split

        self.root = Path(root)
        self.split = split
        self.space = space if space is not None else read_space(find_space(self.root))
        self.image_dir = Path(image_dir) if image_dir is not None else find_image_dir(self.root)
        annotations = read_annotations(self.root / f"{split}.json", self.space)
        self.ov_split = None
        if ov_split is not None:
            self.ov_split = load_split(ov_split) if not isinstance(ov_split, Mapping) else ov_split
            if split == "train":
                annotations = apply_split(annotations, self.ov_split)
        self.annotations = annotations
        self.names = list(annotations)
        missing = [n for n in self.names if not (self.image_dir / n).is_file()]
        if missing:
            raise DatasetError(f"{self.root / (split + '.json')}: {len(missing)} images missing from "
                               f"{self.image_dir}, first: {missing[:3]}")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        name = self.names[index]
        try:
            image = load_image(self.image_dir / name)
        except InvalidImageError as exc:
            raise DatasetError(f"{self.split}.json entry '{name}': {exc}") from exc
        return Sample(name=name, image=image, annotation=self.annotations[name])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]
