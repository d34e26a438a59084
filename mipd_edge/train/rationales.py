"""JRG, the Judgmental Rationales Generator.

For each training image, text rationales at two levels, each positive (true to the
annotation) and negative (plausible but wrong):

* *glimpse*, the scene: what is happening and why it is this verb;
* *gaze*, each role: which entity fills it and what it does in the event.

A generator drafts them: ``TemplateGenerator`` from the frame definitions and noun glosses
(offline, deterministic), or ``LLMGenerator`` from any OpenAI-compatible chat endpoint.
Then the teacher *judges*: it scores every candidate negative against the image (the
glimpse against its global feature, a role's gaze against the features inside the role's
box) and keeps the hard negatives, those it finds most plausible, with their
plausibility, which NMPA uses as the negative's weight.

Honesty: candidates come from the training vocabulary only (confusable verbs are found
among seen and rare verbs), so no unseen verb is named or described to the student.

Output: JSON lines, one per image, appended and flushed as they are made; a rerun skips
the images already done, and a line cut short by a kill is dropped and redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Optional

import numpy as np
import torch

from ..config import RationaleConfig
from ..context import RunContext
from ..data.swig import Annotation, SituDataset
from ..deploy.postprocess import softmax
from ..errors import MipdEdgeError
from ..files import PathLike
from ..models.teacher import Teacher, load_teacher
from ..progress import progress_bar
from ..text import load_text_encoder
from ..vocabulary import Vocabulary
from .data import training_view
from .llm import ChatClient, LLMError, extract_json
from .teacher_cache import TeacherCache, teacher_cache

log = logging.getLogger(__name__)

JUDGE_CHUNK = 32  # images judged together: their sentences go through the text tower as one batch


@dataclass
class Draft:
    """Unjudged rationales of one image: positives and candidate negatives (text, label)."""

    glimpse: str
    glimpse_negatives: list[tuple[str, Optional[str]]]
    gaze: dict[str, str]
    gaze_negatives: dict[str, list[tuple[str, Optional[str]]]]


def majority_nouns(annotation: Annotation) -> dict[str, str]:
    out = {}
    for role in annotation.boxes:
        votes = [f[role] for f in annotation.frames]
        out[role] = max(sorted(set(votes)), key=votes.count)
    return out


class TemplateGenerator:
    """Rationales from the frame definitions and noun glosses; deterministic, offline."""

    name = "template"

    def __init__(self, vocabulary: Vocabulary, candidates: int = 6):
        self.vocab = vocabulary
        verbs, emb = vocabulary.verb_matrix()
        sims = emb @ emb.T
        np.fill_diagonal(sims, -np.inf)
        self.confusable_verbs = {v: [verbs[j] for j in np.argsort(-sims[i])[:candidates]] for i, v in enumerate(verbs)}
        nouns, nemb = vocabulary.noun_matrix()
        nsims = nemb @ nemb.T
        np.fill_diagonal(nsims, -np.inf)
        self.confusable_nouns = {n: [nouns[j] for j in np.argsort(-nsims[i])[:candidates]] for i, n in enumerate(nouns)}

    def noun_phrase(self, noun: str) -> str:
        return self.vocab.label(noun) if noun else "something"

    def glimpse(self, verb: str, nouns: dict[str, str]) -> str:
        frame = self.vocab.frame(verb)
        scene = frame.abstract or f"the AGENT {verb}"
        for role in frame.roles:
            scene = re.sub(rf"\b{re.escape(role.upper())}\b", self.noun_phrase(nouns.get(role, "")), scene)
        reason = frame.definition[:1].lower() + frame.definition[1:] if frame.definition else verb
        return f"{scene[:1].upper() + scene[1:]}. It is {verb} because {reason}"

    def gaze_text(self, verb: str, role: str, noun: str) -> str:
        frame = self.vocab.frame(verb)
        gloss = self.vocab.nouns[noun].definition if noun in self.vocab.nouns else ""
        return (f"The {role} is {self.noun_phrase(noun)}{', ' + gloss if gloss else ''}; "
                f"it is {frame.role_definitions.get(role) or 'the ' + role + ' of ' + verb}.")

    def draft(self, annotation: Annotation) -> Draft:
        nouns = majority_nouns(annotation)
        verb = annotation.verb
        glimpse_neg = [(self.glimpse(u, nouns), u) for u in self.confusable_verbs[verb]]
        gaze = {r: self.gaze_text(verb, r, n) for r, n in nouns.items()}
        gaze_neg = {r: [(self.gaze_text(verb, r, m), m) for m in self.confusable_nouns.get(n, [])
                        if m not in annotation.nouns(r)] for r, n in nouns.items()}
        return Draft(self.glimpse(verb, nouns), glimpse_neg, gaze, gaze_neg)


PROMPT = """You write rationales for grounded situation recognition.
Image content (from the annotation): verb "{verb}" ({definition}).
Roles and their fillers: {roles}.
Confusable verbs (write one wrong but plausible scene rationale for each): {confusable}.
Answer with JSON only, in this form:
{{"glimpse": {{"positive": "<one sentence: what happens and why it is {verb}>",
              "negatives": ["<one plausible but wrong sentence per confusable verb>"]}},
 "gaze": {{"<role>": {{"positive": "<the entity in this role and what it does>",
                       "negatives": ["<a plausible but wrong entity for this role>", "..."]}}}}}}
Use the role names exactly: {role_names}."""


class LLMGenerator:
    """Rationales written by an LLM behind an OpenAI-compatible endpoint."""

    def __init__(self, client: ChatClient, templates: TemplateGenerator):
        self.client, self.templates = client, templates
        self.name = f"openai:{client.model}"

    def draft(self, annotation: Annotation) -> Draft:
        vocab, verb = self.templates.vocab, annotation.verb
        frame = vocab.frame(verb)
        nouns = majority_nouns(annotation)
        confusable = self.templates.confusable_verbs[verb][:3]
        prompt = PROMPT.format(verb=verb, definition=frame.definition,
                               roles=", ".join(f"{r}: {self.templates.noun_phrase(n)}" for r, n in nouns.items()),
                               confusable=", ".join(f"{u} ({vocab.frame(u).definition})" for u in confusable),
                               role_names=", ".join(frame.roles))
        reply = extract_json(self.client.complete([{"role": "user", "content": prompt}]))
        try:
            glimpse = reply["glimpse"]
            draft = Draft(_text(glimpse["positive"]), [(_text(t), None) for t in glimpse["negatives"]], {}, {})
            for role in frame.roles:
                entry = reply["gaze"][role]
                draft.gaze[role] = _text(entry["positive"])
                draft.gaze_negatives[role] = [(_text(t), None) for t in entry["negatives"]]
        except (KeyError, TypeError) as exc:
            raise LLMError(f"the reply lacks {exc} or has the wrong shape: {json.dumps(reply)[:200]}") from exc
        if not draft.glimpse_negatives:
            raise LLMError("the reply has no negative glimpse rationale")
        return draft


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LLMError(f"expected a non-empty sentence, got {value!r:.100}")
    return value.strip()


def draft_texts(draft: Draft) -> list[str]:
    """Every sentence of a draft that the teacher has to read."""
    texts = [draft.glimpse, *(t for t, _ in draft.glimpse_negatives), *draft.gaze.values()]
    return texts + [t for negatives in draft.gaze_negatives.values() for t, _ in negatives]


def judge(draft: Draft, global_feat: np.ndarray, regions: np.ndarray, roles: list[str],
          text_features: Mapping[str, np.ndarray], logit_scale: float, keep: int,
          rng: Optional[np.random.Generator] = None) -> dict[str, Any]:
    """Keep the ``keep`` negatives the teacher finds most plausible, with their plausibility:
    the probability the teacher gives the negative among {positive, candidates}.
    ``text_features`` holds the teacher's embedding of every sentence of the draft (empty for
    a teacher whose image features are not in its text space: then there are no scores).

    With ``rng`` the negatives are ``keep`` candidates drawn at random, each with the same
    plausibility: the control that shows what the teacher's judgment adds."""

    def pick(feature: np.ndarray, positive: str, candidates: list[tuple[str, Optional[str]]], label: str) -> dict:
        probs = None
        if text_features:
            feats = np.stack([text_features[t] for t in [positive] + [t for t, _ in candidates]])
            probs = softmax(logit_scale * feats @ feature.astype(np.float32))
        if rng is None:
            order = np.argsort(-probs[1:], kind="stable")[:keep]
            plausibility = probs[1:]
        else:
            order = rng.permutation(len(candidates))[:keep]
            plausibility = np.full(len(candidates), 1.0 / max(1, len(order)))
        return {
            "positive": positive,
            "teacher_positive": None if probs is None else float(probs[0]),
            "negatives": [
                {"text": candidates[i][0], label: candidates[i][1], "plausibility": float(plausibility[i])}
                for i in order
            ],
        }

    record = {"glimpse": pick(global_feat, draft.glimpse, draft.glimpse_negatives, "verb"), "gaze": {}}
    for r, role in enumerate(roles):
        if role in draft.gaze:
            record["gaze"][role] = pick(regions[r], draft.gaze[role], draft.gaze_negatives.get(role, []), "noun")
    return record


def read_done(path: Path) -> set[str]:
    """Images already in a rationale file; a last line cut short by a kill is removed."""
    if not path.is_file():
        return set()
    done, good = set(), 0
    with path.open("rb") as f:
        for line in f:
            try:
                done.add(json.loads(line)["image"])
                good += len(line)
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                log.warning("%s: dropping a damaged line after %d records (it will be redone)", path, len(done))
                break
    if good != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good)
    return done


def load_rationales(path: PathLike) -> dict[str, dict]:
    return {r["image"]: r for r in _records(Path(path))}


def load_judged_rationales(path: PathLike, judgment: str = "teacher") -> dict[str, dict]:
    """The rationales of ``path``, refused unless their negatives were chosen by ``judgment``
    (``teacher`` or ``random``), so an ablation row never trains on the other row's file."""
    path = Path(path)
    if not path.is_file():
        raise MipdEdgeError(f"rationales file not found: {path}")
    records = load_rationales(path)
    other = sorted({r.get("judgment", "teacher") for r in records.values()} - {judgment})
    if other:
        raise MipdEdgeError(f"{path}: negatives chosen by {other[0]!r}, but this run needs {judgment!r} ones "
                            f"(make them with `mipd-edge rationales --judgment {judgment}`)")
    return records


def judgment_rng(judgment: str, image: str) -> Optional[np.random.Generator]:
    """None for the teacher's judgment; for ``random``, a generator seeded by the image's name,
    so that a resumed or repeated run draws the same negatives."""
    if judgment == "teacher":
        return None
    if judgment != "random":
        raise MipdEdgeError(f"judgment must be 'teacher' or 'random', got {judgment!r}")
    return np.random.default_rng(int.from_bytes(hashlib.sha256(image.encode()).digest()[:8], "little"))


def _records(path: Path) -> Iterator[dict]:
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def generate_rationales(data_dir: PathLike, teacher_spec: PathLike, out: PathLike,
                        cfg: RationaleConfig = RationaleConfig(), run: RunContext = RunContext()) -> dict[str, int]:
    """Write rationales for every training image (training view of the Ov split) into ``out``
    (JSONL, resumed where it stops); ``cfg.judgment`` ``random`` draws the kept negatives at
    random instead of by the teacher's judgment."""
    generator, endpoint, model, judgment = cfg.generator, cfg.endpoint, cfg.model, cfg.judgment
    progress, cache_dir = run.progress, run.cache
    judgment_rng(judgment, "")  # an unknown judgment fails before any work
    data_dir, out = Path(data_dir), Path(out)
    encoder = load_text_encoder(cfg.text_encoder, cache_dir=cache_dir / "text")
    _, train_set, vocab = training_view(data_dir, encoder)
    teacher = load_teacher(teacher_spec, text_encoder=encoder)
    if judgment == "teacher" and not teacher.image_text:
        raise MipdEdgeError(f"teacher {teacher.id} cannot judge negatives: its image features are not in its text "
                            "space (BLIP-2); draw them with --judgment random")
    cache: TeacherCache = teacher_cache(teacher, train_set, vocab, cache_dir / "teacher", progress=progress)
    templates = TemplateGenerator(vocab, cfg.candidates)
    if generator == "template":
        make = templates
    elif generator == "openai":
        if not endpoint or not model:
            raise LLMError("the openai generator needs --endpoint and --model")
        client = ChatClient(endpoint, model, timeout=cfg.timeout, retries=cfg.retries, backoff=cfg.backoff,
                            api_key=os.environ.get("OPENAI_API_KEY"))
        make = LLMGenerator(client, templates)
    else:
        raise LLMError(f"unknown generator {generator!r} (template or openai)")

    done = read_done(out)
    if done:
        load_judged_rationales(out, judgment)  # never complete a file with negatives chosen the other way
    todo = [i for i, n in enumerate(train_set.names) if n not in done]
    errors = out.with_suffix(out.suffix + ".errors")
    out.parent.mkdir(parents=True, exist_ok=True)

    def draft(i: int) -> tuple[int, Draft | Exception]:
        try:
            return i, make.draft(train_set.annotations[train_set.names[i]])
        except LLMError as exc:
            return i, exc

    with out.open("a", encoding="utf-8") as f, ThreadPoolExecutor(max(1, cfg.workers)) as pool, \
            progress_bar(total=len(todo), desc=f"rationales ({make.name})", unit="img", enabled=progress) as bar:
        writer = RationaleWriter(f, errors, train_set, vocab, cache, teacher, make.name, cfg)

        def write(results: list[tuple[int, Draft | Exception]]) -> None:
            writer.write(results)
            bar.update(len(results))

        # bounded: drafts in flight for at most two chunks; each chunk is judged with one batched
        # pass of the teacher's text tower and written in submission order
        pending: list = []
        for i in todo:
            pending.append(pool.submit(draft, i))
            if len(pending) >= 2 * JUDGE_CHUNK:
                write([fut.result() for fut in pending[:JUDGE_CHUNK]])
                pending = pending[JUDGE_CHUNK:]
        for start in range(0, len(pending), JUDGE_CHUNK):
            write([fut.result() for fut in pending[start:start + JUDGE_CHUNK]])
    stats = {"done_before": len(done), **writer.stats}
    log.info("rationales: %d written, %d failed (see %s), %d were already done -> %s",
             stats["written"], stats["failed"], errors, stats["done_before"], out)
    return stats


@dataclass
class RationaleWriter:
    """Judges chunks of drafts and appends their records to the open rationale file (and the
    drafts that failed to ``errors``), counting both in ``stats``: one batched pass of the
    teacher's text tower per chunk, and each chunk on disk before the next is judged, so a
    kill loses at most one chunk."""

    file: IO[str]
    errors: Path
    train_set: SituDataset
    vocab: Vocabulary
    cache: TeacherCache
    teacher: Teacher
    generator: str
    cfg: RationaleConfig  # keep, judgment
    stats: dict[str, int] = field(init=False, default_factory=lambda: {"written": 0, "failed": 0})

    def write(self, results: list[tuple[int, Draft | Exception]]) -> None:
        names, teacher = self.train_set.names, self.teacher
        drafts = [(i, d) for i, d in results if not isinstance(d, Exception)]
        for i, exc in results:
            if isinstance(exc, Exception):
                self.stats["failed"] += 1
                with self.errors.open("a", encoding="utf-8") as e:
                    e.write(json.dumps({"image": names[i], "error": str(exc)}) + "\n")
        texts = list(dict.fromkeys(t for _, d in drafts for t in draft_texts(d))) if teacher.image_text else []
        with torch.no_grad():
            text_features = dict(zip(texts, teacher.encode_text(texts).float().numpy())) if texts else {}
        judgment = self.cfg.judgment
        for i, d in drafts:
            annotation = self.train_set.annotations[names[i]]
            roles = list(self.vocab.frame(annotation.verb).roles)
            record = judge(d, np.asarray(self.cache.global_feats[i]), np.asarray(self.cache.regions[i]), roles,
                           text_features, teacher.logit_scale, self.cfg.keep, judgment_rng(judgment, names[i]))
            self.file.write(json.dumps({"image": names[i], "verb": annotation.verb, "generator": self.generator,
                                        "judgment": judgment, **record}) + "\n")
            self.stats["written"] += 1
        self.file.flush()
        os.fsync(self.file.fileno())
