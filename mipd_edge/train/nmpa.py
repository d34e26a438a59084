"""NMPA, Negative-Guided Multimodal Prompting Alignment.

With the teacher frozen, the scene-aware and instance-perception prompts are trained so
that the knowledge they produce from the teacher's features lies close to the embedding
of the image's positive rationale and far from its negative ones. Negatives are weighted
explicitly: a negative the teacher found plausible (the JRG judgment) weighs more, since
that is the confusion the student most needs to be kept from. The other images' positive
rationales in the batch serve as further, unweighted negatives.

The result, per training image, is *scene knowledge* (one vector) and *instance knowledge*
(one vector per role), cached on disk for distillation. ``mapped`` knowledge lies in the
student's text space (the rationales embedded by the student's text encoder); ``anchored``
knowledge in the teacher's own image-text space (the rationales embedded by the teacher's
text tower), as the teacher's features corrected by the prompts (``train/prompts.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..context import RunContext
from ..data.swig import SituDataset
from ..errors import MipdEdgeError
from ..files import PathLike, read_json, write_json
from ..progress import progress_bar
from ..vocabulary import Vocabulary
from .config import MipdConfig
from .losses import INSTANCE_NEGATIVE_WEIGHT, SCENE_NEGATIVE_WEIGHT, cosine_alignment, negative_hinge
from .prompts import InstancePrompt, ScenePrompt
from .rationales import load_judged_rationales
from .teacher_cache import TeacherCache

log = logging.getLogger(__name__)

SCENE_PROMPT_FILE = "scene_prompt.safetensors"
INSTANCE_PROMPT_FILE = "instance_prompt.safetensors"


def nmpa_loss(knowledge: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, weights: torch.Tensor,
              temperature: float = 0.07, batch_negatives: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weighted contrastive alignment of unit-norm knowledge (B, D).

    ``positive`` (B, D); ``negatives`` (B, K, D) with ``weights`` (B, K) (0 = no negative);
    ``batch_negatives`` (B, B) bool marks which other rows' positives count as negatives.
    loss = -log( e^{s+} / (e^{s+} + sum_k w_k e^{s_k} + sum_j e^{s_j}) ), s = cos / temperature
    """
    pos = (knowledge * positive).sum(-1, keepdim=True) / temperature
    neg = torch.einsum("bd,bkd->bk", knowledge, negatives) / temperature
    neg = torch.where(weights > 0, neg + weights.clamp(min=1e-12).log(), torch.full_like(neg, -torch.inf))
    logits = [pos, neg]
    if batch_negatives is not None:
        other = knowledge @ positive.T / temperature
        logits.append(torch.where(batch_negatives, other, torch.full_like(other, -torch.inf)))
    return (torch.logsumexp(torch.cat(logits, dim=1), dim=1) - pos[:, 0]).mean()


def negative_weights(plausibility: np.ndarray, present: np.ndarray, strength: float) -> np.ndarray:
    """1 + strength * K * p: an average negative weighs about 1 + strength, a plausible one more."""
    k = present.sum(-1, keepdims=True).clip(min=1)
    return np.where(present, 1.0 + strength * k * plausibility, 0.0).astype(np.float32)


@dataclass
class Knowledge:
    key: str
    scene: np.ndarray  # (N, text_dim)
    instance: np.ndarray  # (N, R, text_dim)
    folder: Path  # where the run is cached, with its trained scene prompt

    @classmethod
    def at(cls, folder: Path) -> "Knowledge":
        """The knowledge an NMPA run cached in ``folder`` (named by its key)."""
        return cls(folder.name, np.load(folder / "scene.npy", mmap_mode="r"),
                   np.load(folder / "instance.npy", mmap_mode="r"), folder)

    def scene_of(self, global_feats: np.ndarray) -> np.ndarray:
        """Scene knowledge of other teacher features (images without rationales) through the
        trained scene prompt: what NMPA learnt maps any image the teacher sees."""
        prompt = self._prompt(ScenePrompt, "scene_prompt", SCENE_PROMPT_FILE)
        with torch.no_grad():
            return prompt(torch.from_numpy(np.asarray(global_feats, np.float32))).numpy()

    def instance_of(self, regions: np.ndarray, global_feats: np.ndarray, roles: np.ndarray,
                    valid: np.ndarray) -> np.ndarray:
        """Instance knowledge of other images' role regions (N, R, teacher_dim), with their
        global features, role text embeddings (N, R, role_dim) and the roles present (N, R)."""
        prompt = self._prompt(InstancePrompt, "instance_prompt", INSTANCE_PROMPT_FILE)
        with torch.no_grad():
            return prompt(*(torch.from_numpy(np.asarray(a, np.float32)) for a in (regions, global_feats, roles)),
                          torch.from_numpy(np.asarray(valid, bool))).numpy()

    def _prompt(self, cls, meta_key: str, file: str) -> torch.nn.Module:
        from safetensors.torch import load_file

        built = read_json(self.folder / "meta.json").get(meta_key)
        if built is None or not (self.folder / file).is_file():
            raise MipdEdgeError(f"{self.folder}: knowledge cached without its trained {meta_key.replace('_', ' ')}; "
                                "make it again (aligned_knowledge rebuilds such a folder)")
        prompt = cls(**built)
        prompt.load_state_dict(load_file(self.folder / file))
        return prompt.eval()


@dataclass
class AlignmentData:
    """Everything NMPA trains on, as arrays in training-set order."""

    scene_pos: np.ndarray  # (N, D)
    scene_neg: np.ndarray  # (N, K, D)
    scene_w: np.ndarray  # (N, K)
    inst_pos: np.ndarray  # (N, R, D)
    inst_neg: np.ndarray  # (N, R, K, D)
    inst_w: np.ndarray  # (N, R, K)
    roles: np.ndarray  # (N, R, role_dim) role text embeddings (the student's vocabulary)
    valid: np.ndarray  # (N, R) bool


def alignment_data(records: dict[str, dict], names: list[str], dataset: SituDataset, encoder, vocab: Vocabulary,
                   max_roles: int, strength: float) -> AlignmentData:
    missing = [n for n in names if n not in records]
    if missing:
        raise MipdEdgeError(f"{len(missing)} training images have no rationales (e.g. {missing[:3]}); "
                            "run `mipd-edge rationales` again to complete the file")
    texts = sorted({t for n in names for t in _texts(records[n])})
    emb = dict(zip(texts, encoder.encode(texts)))
    n, d = len(names), encoder.dim
    k = max(max((len(records[x]["glimpse"]["negatives"]) for x in names), default=1), 1)
    out = AlignmentData(np.zeros((n, d), np.float32), np.zeros((n, k, d), np.float32), np.zeros((n, k), np.float32),
                        np.zeros((n, max_roles, d), np.float32), np.zeros((n, max_roles, k, d), np.float32),
                        np.zeros((n, max_roles, k), np.float32), np.zeros((n, max_roles, vocab.dim), np.float32),
                        np.zeros((n, max_roles), bool))
    for i, name in enumerate(names):
        rec = records[name]
        out.scene_pos[i], p, present = _side(rec["glimpse"], emb, out.scene_neg[i], k)
        out.scene_w[i] = negative_weights(p, present, strength)
        verb = dataset.annotations[name].verb
        role_names, role_emb = vocab.role_matrix(verb)
        for r, role in enumerate(role_names[:max_roles]):
            out.roles[i, r] = role_emb[r]
            if role in rec["gaze"]:
                out.valid[i, r] = True
                out.inst_pos[i, r], p, present = _side(rec["gaze"][role], emb, out.inst_neg[i, r], k)
                out.inst_w[i, r] = negative_weights(p, present, strength)
    return out


def _texts(record: dict) -> list[str]:
    sides = [record["glimpse"], *record["gaze"].values()]
    return [t for s in sides for t in [s["positive"]] + [neg["text"] for neg in s["negatives"]]]


def _side(side: dict, emb: dict, neg_out: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    negs = side["negatives"][:k]
    p, present = np.zeros(k, np.float32), np.zeros(k, bool)
    for j, neg in enumerate(negs):
        neg_out[j] = emb[neg["text"]]
        p[j], present[j] = neg["plausibility"], True
    return emb[side["positive"]], p, present


@dataclass(frozen=True)
class NmpaConfig:
    """How NMPA trains the prompts (the teacher frozen)."""

    seed: int = 0  # the prompts' initialisation and batch order (the student's training seed)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    temperature: float = 0.07  # of the InfoNCE over the positive and the weighted negatives
    strength: float = 1.0  # how much the teacher's judged plausibility weights the negatives
    max_roles: int = 6  # role slots per image, as the student's


def train_prompts(cache: TeacherCache, data: AlignmentData, cfg: NmpaConfig = NmpaConfig(),
                  options: MipdConfig = MipdConfig(),
                  progress: bool = True) -> tuple[ScenePrompt, InstancePrompt, dict]:
    """``options`` shape what is trained: without negatives (``negatives: none``) the prompts
    only move toward the positive rationale (1 - cos); without a prompt its module has no
    context tokens; ``anchored`` knowledge, see ``train/prompts.py``; the authors' loss shapes
    (``losses: authors``): 1 - cos to the positive and a margin-0 cosine hinge on the judged
    negatives (weight 5 for scene, 1 for instance knowledge) instead of the InfoNCE."""
    seed, epochs, batch_size, lr, temperature = cfg.seed, cfg.epochs, cfg.batch_size, cfg.lr, cfg.temperature
    negatives = options.negatives != "none"
    scene_prompt, instance_prompt = options.scene_prompt, options.instance_prompt
    anchored, hinge = options.knowledge == "anchored", options.losses == "authors"
    torch.manual_seed(seed)
    t_dim, d = cache.global_feats.shape[1], data.scene_pos.shape[1]
    scene = ScenePrompt(t_dim, d, n_ctx=4 if scene_prompt else 0, anchored=anchored)
    instance = InstancePrompt(t_dim, d, n_ctx=4 if instance_prompt else 0, anchored=anchored,
                              role_dim=data.roles.shape[2])

    def align(knowledge, pos, neg, w, hinge_weight):
        if not negatives:
            return cosine_alignment(knowledge, pos)
        if hinge:
            return cosine_alignment(knowledge, pos) + hinge_weight * negative_hinge(knowledge, neg, w > 0)
        same = (pos @ pos.T) > 0.9999  # another image with the same positive text is no negative
        return nmpa_loss(knowledge, pos, neg, w, temperature, ~same)

    opt = torch.optim.AdamW(list(scene.parameters()) + list(instance.parameters()), lr=lr, weight_decay=0.01,
                            fused=True)
    g = torch.from_numpy(np.asarray(cache.global_feats, np.float32))
    regions = torch.from_numpy(np.asarray(cache.regions, np.float32))
    t = {k: torch.from_numpy(v) for k, v in vars(data).items()}
    n = len(g)
    rng = np.random.default_rng(seed)
    losses = {}
    for _ in progress_bar(range(epochs), desc="NMPA", unit="epoch", enabled=progress):
        totals = np.zeros(2)
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            i = order[start:start + batch_size]
            l_scene = align(scene(g[i]), t["scene_pos"][i], t["scene_neg"][i], t["scene_w"][i],
                            SCENE_NEGATIVE_WEIGHT)
            valid = t["valid"][i]
            k_inst = instance(regions[i], g[i], t["roles"][i], valid)[valid]
            l_inst = align(k_inst, t["inst_pos"][i][valid], t["inst_neg"][i][valid], t["inst_w"][i][valid],
                           INSTANCE_NEGATIVE_WEIGHT)
            opt.zero_grad()
            (l_scene + l_inst).backward()
            opt.step()
            totals += [float(l_scene.detach()), float(l_inst.detach())]
        batches = max(1, -(-n // batch_size))
        losses = {"scene": totals[0] / batches, "instance": totals[1] / batches}
    return scene.eval(), instance.eval(), losses


def aligned_knowledge(cache: TeacherCache, rationales: PathLike, dataset: SituDataset, encoder, vocab: Vocabulary,
                      cfg: NmpaConfig = NmpaConfig(), options: MipdConfig = MipdConfig(),
                      run: RunContext = RunContext()) -> Knowledge:
    """Train the prompts with NMPA (or reuse a run cached under ``run.cache / "knowledge"``)
    and return the knowledge. ``options`` says whether negatives count, which prompts have
    context tokens and in which space the knowledge lies; ``encoder`` embeds the rationales
    into that space (the student's text encoder for ``mapped`` knowledge, the teacher's text
    tower for ``anchored``)."""
    rationales, cache_root, progress = Path(rationales), run.cache / "knowledge", run.progress
    max_roles, seed, epochs, strength = cfg.max_roles, cfg.seed, cfg.epochs, cfg.strength
    digest = hashlib.sha256(rationales.read_bytes()).hexdigest() if rationales.is_file() else None
    switches = [options.negatives != "none", options.scene_prompt, options.instance_prompt]
    anchored = options.knowledge == "anchored"
    # the judgment the rationales must have is part of the key: knowledge cached for one kind
    # of rationales is never taken for the other (the rationales are checked when it is made)
    key = hashlib.sha256(json.dumps([cache.key, digest, encoder.id, max_roles, seed, epochs, strength]
                                    + ([] if all(switches) else switches) + (["anchored"] if anchored else [])
                                    + ([] if options.judgment == "teacher" else [options.judgment])
                                    + ([] if options.losses == "ours" else ["hinge"]))
                         .encode()).hexdigest()[:20]
    folder = cache_root / key
    if not all((folder / f).is_file() for f in ("meta.json", SCENE_PROMPT_FILE, INSTANCE_PROMPT_FILE)):
        from safetensors.torch import save_file

        records = load_judged_rationales(rationales, options.judgment)
        data = alignment_data(records, cache.names, dataset, encoder, vocab, max_roles, strength)
        scene, instance, losses = train_prompts(cache, data, cfg, options, progress)
        with torch.no_grad():
            g = torch.from_numpy(np.asarray(cache.global_feats, np.float32))
            regions = torch.from_numpy(np.asarray(cache.regions, np.float32))
            k_scene = scene(g).numpy()
            k_inst = instance(regions, g, torch.from_numpy(data.roles), torch.from_numpy(data.valid)).numpy()
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "scene.npy", k_scene)
        np.save(folder / "instance.npy", k_inst)
        save_file(scene.state_dict(), folder / SCENE_PROMPT_FILE)
        save_file(instance.state_dict(), folder / INSTANCE_PROMPT_FILE)
        report = alignment_report(k_scene, k_inst, data)
        built = {"teacher_dim": g.shape[1], "text_dim": k_scene.shape[1], "n_ctx": 4 if switches[1] else 0,
                 "anchored": anchored}
        built_instance = {**built, "n_ctx": 4 if switches[2] else 0, "role_dim": data.roles.shape[2]}
        write_json(folder / "meta.json", {"key": key, "teacher_cache": cache.key, "rationales": str(rationales),
                                          "rationales_sha256": digest, "losses": losses, "scene_prompt": built,
                                          "instance_prompt": built_instance,
                                          **report})
        log.info(
            "NMPA: scene knowledge cos to positive %.3f vs hardest negative %.3f; instance %.3f vs %.3f",
            report["scene_pos_cos"],
            report["scene_neg_cos"],
            report["instance_pos_cos"],
            report["instance_neg_cos"],
        )
    else:
        log.info("NMPA knowledge: reusing %s", folder)
    read_json(folder / "meta.json")
    return Knowledge.at(folder)


def alignment_report(scene: np.ndarray, instance: np.ndarray, data: AlignmentData) -> dict[str, float]:
    """How aligned the knowledge is: mean cosine to the positive and to the hardest negative."""
    def stats(k, pos, neg, w):
        pos_cos = (k * pos).sum(-1)
        neg_cos = np.where(w > 0, np.einsum("nd,nkd->nk", k, neg), -np.inf).max(-1)
        ok = np.isfinite(neg_cos)
        return float(pos_cos.mean()), float(neg_cos[ok].mean()) if ok.any() else 0.0

    sp, sn = stats(scene, data.scene_pos, data.scene_neg, data.scene_w)
    v = data.valid
    ip, inn = stats(instance[v], data.inst_pos[v], data.inst_neg[v], data.inst_w[v])
    return {"scene_pos_cos": sp, "scene_neg_cos": sn, "instance_pos_cos": ip, "instance_neg_cos": inn}
