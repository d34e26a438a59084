"""Do MIPD's knowledge targets still name unseen verbs, and the right nouns? A probe.

    python benchmarks/knowledge_probe.py [--run runs/ablation/default] [--cache runs/ablation-cache]

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

NMPA is trained afresh (seed 0, the ablation's options) into its own cache folder (``--out``),
so the ablation's cached knowledge is never touched. Writes ``--json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.data.swig import SituDataset
from mipd_edge.models.teacher import load_teacher
from mipd_edge.text import load_text_encoder
from mipd_edge.train.config import MipdConfig
from mipd_edge.train.data import training_view
from mipd_edge.train.nmpa import aligned_knowledge
from mipd_edge.train.teacher_cache import teacher_cache
from mipd_edge.vocabulary import Vocabulary, noun_text

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/ablation/default", help="the ablation's work folder")
    parser.add_argument("--cache", default="runs/ablation-cache", help="the ablation's cache (text, teacher)")
    parser.add_argument("--out", default="runs/knowledge-probe", help="where NMPA's probe run is cached")
    parser.add_argument("--json", default="benchmarks/results/knowledge-probe.json")
    args = parser.parse_args()
    setup_logging(False)
    run, cache = Path(args.run).resolve(), Path(args.cache).resolve()
    data = run / "data"

    encoder = load_text_encoder("minilm", cache_dir=cache / "text")
    split, train_set, train_vocab = training_view(data, encoder)
    teacher = load_teacher(run / "teacher", text_encoder=encoder)
    train_cache = teacher_cache(teacher, train_set, train_vocab, cache / "teacher")
    knowledge = aligned_knowledge(train_cache, run / "rationales.jsonl", train_set, encoder, train_vocab,
                                  Path(args.out).resolve() / "knowledge", options=MipdConfig())

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
    instance = knowledge.instance_of(regions, global_feats, roles, valid)
    verb_gold = [{v} for v in gold_verbs]
    results = {
        "setup": {"run": str(run), "test_images": len(gold_verbs), "role_slots": len(gold_nouns),
                  "knowledge": knowledge.key, "verbs": {s: len(split[s]) for s in SPLITS}},
        "verbs": {"teacher": top1_by_split(test_cache.verb_logits, verbs, verb_gold, gold_verbs, split),
                  "scene knowledge": top1_by_split(knowledge.scene_of(global_feats) @ verb_emb.T, verbs, verb_gold,
                                                   gold_verbs, split)},
        "nouns": {"teacher": top1_by_split(regions[valid] @ teacher_nouns.T, nouns, gold_nouns, slot_verbs, split),
                  "instance knowledge": top1_by_split(instance[valid] @ noun_emb.T, nouns, gold_nouns, slot_verbs,
                                                      split)},
    }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"zero-shot top-1 (%) on {len(gold_verbs)} SynthSitu test images ({len(gold_nouns)} roles with a gold "
          f"noun), by the image's verb split")
    print(f"{'':9s}{'target':20s}" + "".join(f"{s:>9s}" for s in SPLITS))
    for kind, targets in results.items():
        if kind == "setup":
            continue
        for name, scores in targets.items():
            print(f"{kind:9s}{name:20s}" + "".join(f"{scores[s]:9.1f}" for s in SPLITS))


if __name__ == "__main__":
    main()
