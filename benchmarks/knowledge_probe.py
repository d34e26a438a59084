"""Do MIPD's knowledge targets still name unseen verbs, and the right nouns? A probe.

    python benchmarks/knowledge_probe.py [--run runs/ablation/default] [--cache ~/.cache/mipd-edge]
                                         [--variants full random-negatives ...] [--seeds 0 1 2]

KD pulls the student's glance toward the teacher's image feature and its role features toward
the teacher's region features; MIPD pulls them toward scene and instance knowledge: those
teacher features mapped by NMPA's prompts into the student's text space (fitted to the
positive glimpse and gaze rationales of training images). A target can only teach the student
what it holds itself, so each is read here as a zero-shot classifier on the test images of the
component ablation's data, split by the image's seen / rare / unseen verb:

* verbs: the teacher's own verb scores (its image feature against its text tower's verb
  embeddings: what KD's glance target holds) and scene knowledge (the trained scene prompt
  applied to the same features) against the student's verb embeddings;
* nouns, per role with a gold noun: the teacher's region feature in the role's gold box
  against its text tower's noun embeddings, and instance knowledge (the trained instance
  prompt on the same regions) against the student's noun embeddings; right when it is any
  annotator's noun.

NMPA is trained afresh into its own cache folder (``--out``), so the ablation's cached knowledge
is never touched: once per ``--variants`` (the MIPD variants whose prompts or negatives differ
from full MIPD's: their NMPA options and rationales), so a component that does not help the
student can be read by what it does to the targets, and once per NMPA seed (``--seeds``, as a
student's seed sets its NMPA run): each knowledge target reports the mean over seeds and every
seed. Writes ``--json`` and prints a table (mean [min, max] over seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.context import RunContext
from mipd_edge.data.swig import SituDataset
from mipd_edge.errors import MipdEdgeError
from mipd_edge.files import default_cache_dir
from mipd_edge.models.teacher import load_teacher
from mipd_edge.pipeline import rationales_file
from mipd_edge.text import load_text_encoder
from mipd_edge.train.config import MipdConfig
from mipd_edge.train.data import training_view
from mipd_edge.train.nmpa import NmpaConfig, aligned_knowledge
from mipd_edge.train.teacher_cache import teacher_cache
from mipd_edge.vocabulary import Vocabulary, noun_text
from mipd_lab.variants import variant_overrides

SPLITS = ("seen", "rare", "unseen")


def top1_by_split(scores: np.ndarray, labels: list[str], gold: list[set[str]], row_verbs: list[str],
                  split: dict) -> dict[str, float]:
    """Top-1 (%) of ``scores`` (M, L) over ``labels``: a row is right when its best label is one
    of its ``gold`` ones; per split of the row's image verb."""
    right = [labels[j] in g for j, g in zip(scores.argmax(1), gold)]
    out = {}
    for name in SPLITS:
        rows = [i for i, v in enumerate(row_verbs) if v in set(split[name])]
        out[name] = 100.0 * float(np.mean([right[i] for i in rows])) if rows else float("nan")
    return out


def role_slots(dataset: SituDataset, vocab: Vocabulary, max_roles: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Role text embeddings (N, R, D) of each image's verb, which slots have a gold noun (N, R),
    and those slots' gold nouns in the same order as ``valid``'s True entries."""
    roles = np.zeros((len(dataset.names), max_roles, vocab.dim), np.float32)
    valid = np.zeros((len(dataset.names), max_roles), bool)
    gold = []
    for i, name in enumerate(dataset.names):
        annotation = dataset.annotations[name]
        names, emb = vocab.role_matrix(annotation.verb)
        for r, role in enumerate(names[:max_roles]):
            roles[i, r] = emb[r]
            nouns = annotation.nouns(role) - {""}
            if nouns:
                valid[i, r] = True
                gold.append(nouns)
    return roles, valid, gold


def knowledge_options(variant: str) -> MipdConfig:
    """NMPA's options for ``variant``, which must make our knowledge in the student's text space
    (the only one the student's verb and noun embeddings can score)."""
    overrides = variant_overrides(variant)
    options = overrides.get("mipd", MipdConfig())
    if overrides.get("method", "mipd") != "mipd" or options.knowledge != "mapped":
        raise MipdEdgeError(f"variant {variant!r} makes no NMPA knowledge in the student's text space; "
                            "probe full MIPD or one of its prompt or negative variants")
    return options


def over_seeds(by_seed: dict[str, dict[str, float]]) -> dict:
    """Each split's mean over seeds, beside every seed's scores."""
    return {**{s: float(np.mean([m[s] for m in by_seed.values()])) for s in SPLITS}, "seeds": by_seed}


def spread(scores: dict, split: str) -> str:
    """``mean [min, max]`` over a target's seeds, or its one score."""
    seeds = [m[split] for m in scores.get("seeds", {}).values()]
    if len(seeds) < 2:
        return f"{scores[split]:.1f}"
    return f"{scores[split]:.1f} [{min(seeds):.1f}, {max(seeds):.1f}]"


def target_name(kind: str, variant: str) -> str:
    return f"{kind} knowledge" + ("" if variant == "full" else f", {variant}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/ablation/default", help="the ablation's work folder")
    parser.add_argument("--cache", default=str(default_cache_dir()),
                        help="the ablation's cache (text, teacher); default: $MIPD_EDGE_CACHE or ~/.cache/mipd-edge")
    parser.add_argument("--out", default="runs/knowledge-probe", help="where NMPA's probe runs are cached")
    parser.add_argument("--variants", nargs="+", default=["full"], help="MIPD variants whose knowledge to probe")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="NMPA seeds")
    parser.add_argument("--json", default="benchmarks/results/knowledge-probe.json")
    args = parser.parse_args()
    setup_logging(False)
    try:
        variants = {v: knowledge_options(v) for v in args.variants}
    except MipdEdgeError as e:
        raise SystemExit(f"error: {e}") from None
    run, cache = Path(args.run).resolve(), Path(args.cache).resolve()
    data = run / "data"

    encoder = load_text_encoder("minilm", cache_dir=cache / "text")
    split, train_set, train_vocab = training_view(data, encoder)
    teacher = load_teacher(run / "teacher", text_encoder=encoder)
    train_cache = teacher_cache(teacher, train_set, train_vocab, cache / "teacher")

    test = SituDataset(data, "test")
    vocab = Vocabulary.from_space(test.space, encoder)  # every verb, unseen ones included, as at test time
    test_cache = teacher_cache(teacher, test, vocab, cache / "teacher")
    verbs, verb_emb = vocab.verb_matrix()
    assert test_cache.verbs == verbs
    gold_verbs = [test.annotations[n].verb for n in test.names]
    global_feats = np.asarray(test_cache.global_feats, np.float32)
    regions = np.asarray(test_cache.regions, np.float32)
    roles, valid, gold_nouns = role_slots(test, vocab, regions.shape[1])
    slot_verbs = [gold_verbs[i] for i in np.nonzero(valid)[0]]
    nouns, noun_emb = vocab.noun_matrix()
    teacher_nouns = teacher.encode_text([noun_text(vocab.nouns[n]) for n in nouns]).float().numpy()
    verb_gold = [{v} for v in gold_verbs]
    results = {
        "setup": {"run": str(run), "test_images": len(gold_verbs), "role_slots": len(gold_nouns), "knowledge": {},
                  "verbs": {s: len(split[s]) for s in SPLITS}},
        "verbs": {"teacher": top1_by_split(test_cache.verb_logits, verbs, verb_gold, gold_verbs, split)},
        "nouns": {"teacher": top1_by_split(regions[valid] @ teacher_nouns.T, nouns, gold_nouns, slot_verbs, split)},
    }
    for variant, options in variants.items():
        _, rationales = rationales_file(run, options.judgment)
        scene, instance = {}, {}
        probe_run = RunContext(cache_dir=Path(args.out).resolve())  # knowledge under OUT/knowledge
        for seed in args.seeds:
            knowledge = aligned_knowledge(train_cache, rationales, train_set, encoder, train_vocab,
                                          NmpaConfig(seed=seed), options, probe_run)
            results["setup"]["knowledge"].setdefault(variant, {})[str(seed)] = knowledge.key
            scene[str(seed)] = top1_by_split(knowledge.scene_of(global_feats) @ verb_emb.T, verbs, verb_gold,
                                             gold_verbs, split)
            regions_knowledge = knowledge.instance_of(regions, global_feats, roles, valid)[valid]
            instance[str(seed)] = top1_by_split(regions_knowledge @ noun_emb.T, nouns, gold_nouns, slot_verbs, split)
        results["verbs"][target_name("scene", variant)] = over_seeds(scene)
        results["nouns"][target_name("instance", variant)] = over_seeds(instance)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(name) for kind in ("verbs", "nouns") for name in results[kind]) + 2
    cell = 20 if len(args.seeds) > 1 else 9
    print(f"zero-shot top-1 (%) on {len(gold_verbs)} SynthSitu test images ({len(gold_nouns)} roles with a gold "
          f"noun), by the image's verb split" + (f"; knowledge: mean [min, max] over NMPA seeds {args.seeds}"
                                                 if len(args.seeds) > 1 else ""))
    print(f"{'':9s}{'target':{width}s}" + "".join(f"{s:>{cell}s}" for s in SPLITS))
    for kind in ("verbs", "nouns"):
        for name, scores in results[kind].items():
            print(f"{kind:9s}{name:{width}s}" + "".join(f"{spread(scores, s):>{cell}s}" for s in SPLITS))


if __name__ == "__main__":
    main()
