"""Result and frame types: what a situation is, in the SWiG / imSitu vocabulary.

A ``Situation`` serialises to exactly one entry of the predictions format that
``mipd_edge.metrics`` evaluates, so anything a Predictor returns can be scored without
glue code:

    {"verbs": [{"verb": "lifting", "score": 0.91,
                "roles": {"agent": {"noun": "n00000001", "box": [x1, y1, x2, y2]}}}, ...],
     "gt_verb_roles": {"agent": {"noun": "", "box": null}}}        # optional
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from .errors import DatasetError

if TYPE_CHECKING:
    import numpy as np

Box = Optional[list[float]]


class Drawable:
    """``plot`` and ``save`` for a Predictor's answer, so a caller draws it on the image it
    came from without knowing which task's answer it holds."""

    def plot(self, image: Any, fps: Optional[float] = None, timings: Optional[Mapping[str, float]] = None,
             zoom: float = 1.0) -> "np.ndarray":
        """A BGR copy of ``image`` (a path, bytes or an array, read as ``Predictor`` reads
        it) with the answer drawn on it; ``zoom`` enlarges small images so the labels stay legible."""
        from .deploy.image import load_image

        return self._draw(load_image(image), fps, timings, zoom)

    def save(self, path: str | Path, image: Any, overwrite: bool = False, zoom: float = 1.0) -> Path:
        """``plot(image)`` written to ``path`` (format by suffix), atomically; an existing file
        is replaced only with ``overwrite``."""
        from .deploy.draw import write_image

        return write_image(path, self.plot(image, zoom=zoom), overwrite)

    def _draw(self, image: "np.ndarray", fps: Optional[float], timings: Optional[Mapping[str, float]],
              zoom: float) -> "np.ndarray":
        raise NotImplementedError


@dataclass(frozen=True)
class Frame:
    """A verb and its semantic roles, as imSitu's space defines them."""

    verb: str
    roles: tuple[str, ...]
    role_definitions: Mapping[str, str]
    definition: str = ""
    abstract: str = ""
    framenet: str = ""


@dataclass(frozen=True)
class Noun:
    """A noun (imSitu uses WordNet synset ids such as ``n10787470``)."""

    id: str
    glosses: tuple[str, ...]
    definition: str = ""

    @property
    def label(self) -> str:
        """The first gloss, a readable name (the id where there is none)."""
        return self.glosses[0] if self.glosses else self.id


@dataclass(frozen=True)
class RoleValue:
    """One filled role: the noun id, its readable label and, if grounded, a box in pixels; in an
    HOI stream, the id of the person's or object's track across frames."""

    noun: str
    label: str = ""
    score: float = 1.0
    box: Box = None
    track: Optional[int] = None

    def to_json(self) -> dict[str, Any]:
        """``{"noun", "box", "label", "score"}`` (and ``"track"`` where tracked); ``box`` is
        ``[x1, y1, x2, y2]`` in pixels or null."""
        out = {"noun": self.noun, "box": None if self.box is None else [float(v) for v in self.box],
               "label": self.label, "score": float(self.score)}
        return out if self.track is None else {**out, "track": self.track}

    @classmethod
    def from_json(cls, obj: Any, where: str = "role") -> "RoleValue":
        if not isinstance(obj, Mapping) or "noun" not in obj:
            raise DatasetError(f"{where}: expected an object with a 'noun' field, got {obj!r}")
        noun = obj["noun"]
        if not isinstance(noun, str):
            raise DatasetError(f"{where}: 'noun' must be a string, got {noun!r}")
        return cls(noun=noun, label=str(obj.get("label", "")), score=float(obj.get("score", 1.0)),
                   box=parse_box(obj.get("box"), where), track=_track(obj, where))


@dataclass(frozen=True)
class VerbCandidate:
    """A verb hypothesis with its score and the roles predicted for it (may be empty)."""

    verb: str
    score: float
    roles: Mapping[str, RoleValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"verb", "score", "roles": {role: RoleValue.to_json()}}``."""
        return {"verb": self.verb, "score": float(self.score),
                "roles": {r: v.to_json() for r, v in self.roles.items()}}


@dataclass(frozen=True)
class Situation(Drawable):
    """The recognised situation of one image: the top-k verbs best first, roles per verb.

    ``verb``, ``score`` and ``roles`` are those of the best candidate. ``gt_verb_roles``
    holds roles predicted for a verb given from outside (the gold verb during evaluation).
    ``track``: in an HOI stream, the interaction's id across frames (its person and object pair).
    """

    candidates: tuple[VerbCandidate, ...]
    gt_verb_roles: Optional[Mapping[str, RoleValue]] = None
    track: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("a Situation needs at least one verb candidate")

    @property
    def verb(self) -> str:
        """The best verb's name."""
        return self.candidates[0].verb

    @property
    def score(self) -> float:
        """The best verb's score (a softmax probability over the vocabulary's verbs)."""
        return self.candidates[0].score

    @property
    def roles(self) -> Mapping[str, RoleValue]:
        """The best verb's roles in frame order: role name -> ``RoleValue``."""
        return self.candidates[0].roles

    @property
    def situations(self) -> list["Situation"]:
        """Itself as a list of one, as ``Interactions.situations`` lists an HOI answer."""
        return [self]

    def to_json(self) -> dict[str, Any]:
        """SWiG-style prediction JSON: ``{"verbs": [...up to top-k], "gt_verb_roles": {...}}``
        (what ``mipd-edge eval`` scores and ``--json`` writes)."""
        out: dict[str, Any] = {"verbs": [c.to_json() for c in self.candidates]}
        if self.gt_verb_roles is not None:
            out["gt_verb_roles"] = {r: v.to_json() for r, v in self.gt_verb_roles.items()}
        if self.track is not None:
            out["track"] = self.track
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "prediction") -> "Situation":
        if not isinstance(obj, Mapping) or not isinstance(obj.get("verbs"), list) or not obj["verbs"]:
            raise DatasetError(f"{where}: expected an object with a non-empty 'verbs' list")
        candidates = []
        for i, entry in enumerate(obj["verbs"]):
            at = f"{where}: verbs[{i}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("verb"), str):
                raise DatasetError(f"{at}: expected an object with a string 'verb'")
            candidates.append(VerbCandidate(entry["verb"], _number(entry.get("score", 0.0), at),
                                            _roles(entry.get("roles", {}), at)))
        gt = obj.get("gt_verb_roles")
        return cls(tuple(candidates), None if gt is None else _roles(gt, f"{where}: gt_verb_roles"),
                   _track(obj, where))

    def __str__(self) -> str:
        roles = ", ".join(f"{r}={v.label or v.noun or '-'}" for r, v in self.roles.items())
        return f"{self.verb} ({self.score:.2f}): {roles}"

    def _draw(self, image, fps, timings, zoom):
        from .deploy.draw import draw_situation

        return draw_situation(image, self, fps, timings, zoom)


class Interactions(Drawable, list):
    """An HOI bundle's answer for one image: a situation per detected human-object
    interaction (verb; agent and item with boxes), best first. It is a list; its
    ``situations`` and ``to_json`` match a ``Situation``'s, so code that takes either
    task's answers (streams, drawing, bundle checks) need not ask which it holds."""

    @property
    def situations(self) -> list[Situation]:
        """The interactions as a plain list, best first."""
        return list(self)

    def to_json(self) -> dict[str, Any]:
        """``{"interactions": [Situation.to_json(), ...]}``."""
        return {"interactions": [s.to_json() for s in self]}

    def __str__(self) -> str:
        return "; ".join(map(str, self)) or "no interaction"

    def _draw(self, image, fps, timings, zoom):
        from .deploy.draw import draw_interactions

        return draw_interactions(image, self, fps, timings, zoom)


def parse_box(value: Any, where: str = "box") -> Box:
    """A box as ``[x1, y1, x2, y2]`` floats, or None for "no box" (null or SWiG's all -1)."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise DatasetError(f"{where}: a box is [x1, y1, x2, y2] or null, got {value!r}")
    box = [_number(v, where) for v in value]
    if all(v == -1 for v in box):
        return None
    return box


def _track(obj: Mapping[str, Any], where: str) -> Optional[int]:
    track = obj.get("track")
    if track is not None and (not isinstance(track, int) or isinstance(track, bool)):
        raise DatasetError(f"{where}: 'track' must be an integer, got {track!r}")
    return track


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _roles(obj: Any, where: str) -> dict[str, RoleValue]:
    if not isinstance(obj, Mapping):
        raise DatasetError(f"{where}: 'roles' must be an object mapping role -> {{noun, box}}")
    return {str(r): RoleValue.from_json(v, f"{where}: role '{r}'") for r, v in obj.items()}
