"""The open vocabulary: verbs with their frames, nouns, and the text embeddings of each.

Models emit embeddings; this class is what they are matched against, so recognising a
new verb or noun is an edit here, not a retraining or a re-export. The vocabulary records
which text encoder made its embeddings and refuses to mix in vectors from another one.

What text stands for an entry is a fixed, documented choice (the same at training and at
run time, or the embeddings would not line up):

* verb: its definition (the abstract, then the name, when there is none). A verb is
  recognised from its description: measured on SynthSitu, definition-only embeddings are
  additive in the visual primitives the definitions describe (a linear map fitted on the
  training verbs predicts all 10 unseen verbs' embeddings, nearest first), while adding
  the name, whose meaning no training image taught, breaks that for half of them.
* role: ``"the {role} of {verb}: {role definition}"`` (roles are per verb, as in imSitu)
* noun: ``"{gloss 1}, {gloss 2}: {definition}"``; the empty noun ``""`` is
  ``"nothing: no entity fills this role"``.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from .errors import VocabularyError
from .files import PathLike, atomic_write_bytes
from .situation import Frame, Noun

FORMAT_VERSION = 1
EMPTY_NOUN = Noun("", ("nothing",), "no entity fills this role")


def locked(method):
    """Edits hold the vocabulary's lock, so a Predictor thread building its matching tables
    sees the vocabulary before an edit or after it, never halfway."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return run


def check_embeddings(vecs: np.ndarray, what: str) -> None:
    """Text embeddings are finite and of non-zero length (cosine matching divides by it)."""
    bad = ~np.isfinite(vecs).all(axis=1)
    if bad.any():
        raise VocabularyError(f"{what}: {int(bad.sum())} embeddings hold NaN or infinite values "
                              f"(row {int(np.flatnonzero(bad)[0])})")
    zero = np.linalg.norm(vecs, axis=1) < 1e-6
    if zero.any():
        raise VocabularyError(
            f"{what}: {int(zero.sum())} embeddings have zero length (row {int(np.flatnonzero(zero)[0])})"
        )


def verb_text(frame: Frame) -> str:
    return (frame.definition or frame.abstract or frame.verb).strip()


def role_text(frame: Frame, role: str) -> str:
    return f"the {role} of {frame.verb}: {frame.role_definitions.get(role, '')}".strip()


def noun_text(noun: Noun) -> str:
    return f"{', '.join(noun.glosses) or noun.id}: {noun.definition}".strip()


class Vocabulary:
    """Verbs (frames) and nouns, optionally embedded by one text encoder."""

    def __init__(self, frames: Mapping[str, Frame], nouns: Mapping[str, Noun], encoder=None):
        self._frames: dict[str, Frame] = dict(frames)
        self._nouns: dict[str, Noun] = dict(nouns)
        self._nouns.setdefault("", EMPTY_NOUN)
        self.encoder_id: Optional[str] = None
        self.dim: Optional[int] = None
        self.encoder = None
        self._verb_emb: dict[str, np.ndarray] = {}
        self._role_emb: dict[str, np.ndarray] = {}
        self._noun_emb: dict[str, np.ndarray] = {}
        self._matrices: dict = {}
        self.version = 0  # bumped on every edit, so users of cached matrices can tell
        self.lock = threading.RLock()
        if encoder is not None:
            self.embed(encoder)

    @classmethod
    def from_space(cls, space, encoder=None) -> "Vocabulary":
        """From a ``SituSpace`` (see ``mipd_edge.data.swig.read_space``)."""
        return cls(space.frames, space.nouns, encoder)

    # --- reading -----------------------------------------------------------------------

    @property
    def verbs(self) -> list[str]:
        """Verb names in vocabulary order (the order of the verb scores)."""
        return list(self._frames)

    @property
    def frames(self) -> Mapping[str, Frame]:
        """Verb name -> its ``Frame`` (definition and roles)."""
        return self._frames

    @property
    def nouns(self) -> Mapping[str, Noun]:
        """Noun id -> ``Noun``; the empty id ``""`` is "no entity fills this role"."""
        return self._nouns

    @property
    def has_embeddings(self) -> bool:
        """Whether the text embeddings are present (a bundle's always are)."""
        return self.encoder_id is not None

    def frame(self, verb: str) -> Frame:
        """The verb's frame; an unknown verb is a ``VocabularyError``."""
        try:
            return self._frames[verb]
        except KeyError:
            raise VocabularyError(f"unknown verb {verb!r}") from None

    def label(self, noun_id: str) -> str:
        """A noun's readable label (the id itself for an unknown noun)."""
        noun = self._nouns.get(noun_id)
        return noun.label if noun is not None else noun_id

    def verb_matrix(self) -> tuple[list[str], np.ndarray]:
        """Verb names and their (V, D) embeddings, in vocabulary order."""
        return self._matrix("verbs", self._frames, self._verb_emb)

    def noun_matrix(self) -> tuple[list[str], np.ndarray]:
        """Noun ids and their (N, D) embeddings, in vocabulary order."""
        return self._matrix("nouns", self._nouns, self._noun_emb)

    def role_matrix(self, verb: str) -> tuple[list[str], np.ndarray]:
        """The verb's roles in frame order and their (R, D) embeddings."""
        frame = self.frame(verb)
        self._require_embeddings()
        return list(frame.roles), self._role_emb[verb]

    def _matrix(self, key: str, entries: Mapping, emb: Mapping) -> tuple[list[str], np.ndarray]:
        self._require_embeddings()
        if key not in self._matrices:
            names = list(entries)
            self._matrices[key] = (names, np.stack([emb[n] for n in names]) if names
                                   else np.zeros((0, self.dim), np.float32))
        return self._matrices[key]

    def _require_embeddings(self) -> None:
        if not self.has_embeddings:
            raise VocabularyError("this vocabulary has no text embeddings yet: call embed(encoder)")

    # --- embedding ---------------------------------------------------------------------

    @locked
    def embed(self, encoder) -> "Vocabulary":
        """(Re)compute every embedding with ``encoder``, which then owns this vocabulary."""
        frames = list(self._frames.values())
        roles = [(f, r) for f in frames for r in f.roles]
        nouns = list(self._nouns.values())
        texts = [verb_text(f) for f in frames] + [role_text(f, r) for f, r in roles] + [noun_text(n) for n in nouns]
        vecs = self._encode(encoder, texts)
        self.encoder_id, self.dim, self.encoder = encoder.id, int(vecs.shape[1]), encoder
        self._verb_emb = {f.verb: vecs[i] for i, f in enumerate(frames)}
        at = len(frames)
        self._role_emb = {}
        for f in frames:
            self._role_emb[f.verb] = vecs[at:at + len(f.roles)]
            at += len(f.roles)
        self._noun_emb = {n.id: vecs[at + i] for i, n in enumerate(nouns)}
        self._changed()
        return self

    def attach(self, encoder) -> None:
        """Use ``encoder`` for later edits; it must be the encoder that made the embeddings."""
        self._check_encoder(encoder)
        self.encoder = encoder

    def _check_encoder(self, encoder) -> None:
        if encoder is None:
            raise VocabularyError("editing an embedded vocabulary needs its text encoder "
                                  f"({self.encoder_id}): pass encoder= or call attach(encoder)")
        if self.encoder_id is not None and encoder.id != self.encoder_id:
            raise VocabularyError(f"this vocabulary was embedded by {self.encoder_id}; refusing to mix in "
                                  f"embeddings from {encoder.id}")

    def _encode(self, encoder, texts: Sequence[str]) -> np.ndarray:
        vecs = np.asarray(encoder.encode(list(texts)), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise VocabularyError(f"text encoder {encoder.id} returned shape {vecs.shape} for {len(texts)} texts")
        if self.dim is not None and self.encoder_id == encoder.id and vecs.shape[1] != self.dim:
            raise VocabularyError(f"text encoder {encoder.id} gives {vecs.shape[1]}-d vectors, "
                                  f"the vocabulary holds {self.dim}-d")
        check_embeddings(vecs, f"text encoder {encoder.id}")
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def _edit_encoder(self, encoder):
        encoder = encoder if encoder is not None else self.encoder
        if not self.has_embeddings:
            return None
        self._check_encoder(encoder)
        return encoder

    # --- editing -----------------------------------------------------------------------

    @locked
    def add_verb(self, name: str, definition: str, roles: Union[Mapping[str, str], Sequence[str]],
                 abstract: str = "", encoder=None, replace: bool = False) -> Frame:
        """Add a verb with its frame; ``roles`` maps role -> definition (or just lists roles)."""
        if not name or not isinstance(name, str):
            raise VocabularyError("a verb needs a non-empty name")
        if name in self._frames and not replace:
            raise VocabularyError(f"verb {name!r} already exists (pass replace=True to redefine it)")
        role_defs = dict(roles) if isinstance(roles, Mapping) else {r: "" for r in roles}
        if not role_defs or len(role_defs) > 6:
            raise VocabularyError(f"verb {name!r}: a frame has 1 to 6 roles, got {len(role_defs)}")
        frame = Frame(verb=name, roles=tuple(role_defs), role_definitions=role_defs,
                      definition=definition, abstract=abstract, framenet=name.capitalize())
        encoder = self._edit_encoder(encoder)
        if encoder is not None:
            vecs = self._encode(encoder, [verb_text(frame)] + [role_text(frame, r) for r in frame.roles])
            self._verb_emb[name], self._role_emb[name] = vecs[0], vecs[1:]
        self._frames[name] = frame
        self._changed()
        return frame

    @locked
    def add_noun(self, noun_id: str, glosses: Union[str, Sequence[str]], definition: str = "",
                 encoder=None, replace: bool = False) -> Noun:
        """Add (or with ``replace=True`` redefine) a noun; its text is embedded with the
        vocabulary's text encoder (or ``encoder``), and the next prediction can answer it."""
        if not isinstance(noun_id, str) or not noun_id:
            raise VocabularyError("a noun needs a non-empty id")
        if noun_id in self._nouns and not replace:
            raise VocabularyError(f"noun {noun_id!r} already exists (pass replace=True to redefine it)")
        noun = Noun(noun_id, (glosses,) if isinstance(glosses, str) else tuple(glosses), definition)
        encoder = self._edit_encoder(encoder)
        if encoder is not None:
            self._noun_emb[noun_id] = self._encode(encoder, [noun_text(noun)])[0]
        self._nouns[noun_id] = noun
        self._changed()
        return noun

    @locked
    def remove_verb(self, name: str) -> None:
        """Remove a verb and its roles' embeddings; the next prediction never answers it."""
        self.frame(name)
        del self._frames[name]
        self._verb_emb.pop(name, None)
        self._role_emb.pop(name, None)
        self._changed()

    @locked
    def remove_noun(self, noun_id: str) -> None:
        """Remove a noun (the empty noun stays: it is how a role says "nothing")."""
        if noun_id not in self._nouns or noun_id == "":
            raise VocabularyError(f"unknown noun {noun_id!r}" if noun_id else "the empty noun cannot be removed")
        del self._nouns[noun_id]
        self._noun_emb.pop(noun_id, None)
        self._changed()

    def subset(self, verbs: Sequence[str]) -> "Vocabulary":
        """A copy with only ``verbs`` (all nouns): what a student may be trained against."""
        unknown = [v for v in verbs if v not in self._frames]
        if unknown:
            raise VocabularyError(f"unknown verbs {unknown[:5]}")
        out = Vocabulary({v: self._frames[v] for v in verbs}, self._nouns)
        out.encoder_id, out.dim, out.encoder = self.encoder_id, self.dim, self.encoder
        if self.has_embeddings:
            out._verb_emb = {v: self._verb_emb[v] for v in verbs}
            out._role_emb = {v: self._role_emb[v] for v in verbs}
            out._noun_emb = dict(self._noun_emb)
        return out

    def _changed(self) -> None:
        self._matrices.clear()
        self.version += 1

    # --- files -------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """``vocabulary.npz``: metadata as a JSON string plus float32 arrays; no pickle."""
        frames = list(self._frames.values())
        meta = {"format": FORMAT_VERSION, "encoder_id": self.encoder_id, "dim": self.dim,
                "frames": [{"verb": f.verb, "roles": list(f.roles), "role_definitions": dict(f.role_definitions),
                            "definition": f.definition, "abstract": f.abstract, "framenet": f.framenet}
                           for f in frames],
                "nouns": [{"id": n.id, "glosses": list(n.glosses), "definition": n.definition}
                          for n in self._nouns.values()]}
        arrays = {"meta": np.array(json.dumps(meta))}
        if self.has_embeddings:
            arrays["verb_embeddings"] = self.verb_matrix()[1]
            arrays["noun_embeddings"] = self.noun_matrix()[1]
            arrays["role_embeddings"] = (np.concatenate([self._role_emb[f.verb] for f in frames])
                                         if frames else np.zeros((0, self.dim), np.float32))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: PathLike, encoder=None) -> "Vocabulary":
        path = Path(path)
        if not path.is_file():
            raise VocabularyError(f"vocabulary file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays["meta"]))
            frames = {f["verb"]: Frame(verb=f["verb"], roles=tuple(f["roles"]),
                                       role_definitions=dict(f["role_definitions"]), definition=f["definition"],
                                       abstract=f["abstract"], framenet=f["framenet"]) for f in meta["frames"]}
            nouns = {n["id"]: Noun(n["id"], tuple(n["glosses"]), n["definition"]) for n in meta["nouns"]}
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise VocabularyError(f"{path}: not a readable mipd-edge vocabulary ({exc})") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise VocabularyError(f"{path}: vocabulary format {meta.get('format')} is not {FORMAT_VERSION}")
        vocab = cls(frames, nouns)
        if meta["encoder_id"] is not None:
            vocab._load_embeddings(arrays, meta, path)
        if encoder is not None:
            vocab.attach(encoder)
        return vocab

    def _load_embeddings(self, arrays: dict, meta: dict, path: Path) -> None:
        dim = int(meta["dim"])
        frames = list(self._frames.values())
        expected = {"verb_embeddings": len(frames), "noun_embeddings": len(self._nouns),
                    "role_embeddings": sum(len(f.roles) for f in frames)}
        for key, rows in expected.items():
            a = arrays.get(key)
            if a is None or a.shape != (rows, dim) or a.dtype != np.float32:
                raise VocabularyError(f"{path}: '{key}' should be float32 of shape ({rows}, {dim}), "
                                      f"got {None if a is None else (a.dtype, a.shape)}")
            check_embeddings(a, f"{path} '{key}'")
        self.encoder_id, self.dim = meta["encoder_id"], dim
        self._verb_emb = dict(zip(self._frames, arrays["verb_embeddings"]))
        self._noun_emb = dict(zip(self._nouns, arrays["noun_embeddings"]))
        at = 0
        for f in frames:
            self._role_emb[f.verb] = arrays["role_embeddings"][at:at + len(f.roles)]
            at += len(f.roles)
