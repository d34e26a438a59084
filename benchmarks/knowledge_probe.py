"""Does MIPD's scene knowledge still name unseen verbs? A probe of the distillation targets.

    python benchmarks/knowledge_probe.py [--run runs/ablation/default] [--cache runs/ablation-cache]

KD pulls the student's glance toward the teacher's image feature; MIPD toward scene
knowledge, the teacher's feature mapped by NMPA's scene prompt into the student's text space
(fitted to the positive glimpse rationales of training images). A target can only teach the
student what it holds itself, so each is read here as a zero-shot verb classifier on the test
images of the component ablation's data, split by seen / rare / unseen verb:

* ``teacher``: the teacher's own verb scores (its image feature against its text tower's
  verb embeddings): what KD's target holds.
* ``scene knowledge``: scene knowledge of each test image (the trained scene prompt applied to
  the teacher's feature) against the student's verb embeddings: what MIPD's target holds.

NMPA is trained afresh (seed 0, the ablation's options) into its own cache folder (``--out``),
so the ablation's cached knowledge is never touched. Writes ``--json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.data.split import dataset_split
from mipd_edge.data.swig import SituDataset
from mipd_edge.models.teacher import load_teacher
from mipd_edge.text import load_text_encoder
from mipd_edge.train.config import MipdConfig
from mipd_edge.train.data import training_view
from mipd_edge.train.nmpa import aligned_knowledge
from mipd_edge.train.teacher_cache import teacher_cache
from mipd_edge.vocabulary import Vocabulary

SPLITS = ("seen", "rare", "unseen")


def top1_by_split(scores: np.ndarray, verbs: list[str], gold: list[str], split: dict) -> dict[str, float]:
    """Verb top-1 (%) of ``scores`` (N, V) over all verbs, per split of the gold verb."""
    predicted = [verbs[i] for i in scores.argmax(1)]
    out = {}
    for name in SPLITS:
        rows = [i for i, v in enumerate(gold) if v in set(split[name])]
        out[name] = 100.0 * float(np.mean([predicted[i] == gold[i] for i in rows])) if rows else float("nan")
    return out


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
    gold = [test.annotations[n].verb for n in test.names]
    split = dataset_split(data)
    scene = knowledge.scene_of(np.asarray(test_cache.global_feats, np.float32))
    results = {
        "setup": {"run": str(run), "test_images": len(gold), "knowledge": knowledge.key,
                  "verbs": {s: len(split[s]) for s in SPLITS}},
        "teacher": top1_by_split(test_cache.verb_logits, verbs, gold, split),
        "scene knowledge": top1_by_split(scene @ verb_emb.T, verbs, gold, split),
    }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"zero-shot verb top-1 (%) on {len(gold)} SynthSitu test images, over all {len(verbs)} verbs")
    print(f"{'target':18s}" + "".join(f"{s:>9s}" for s in SPLITS))
    for name in ("teacher", "scene knowledge"):
        print(f"{name:18s}" + "".join(f"{results[name][s]:9.1f}" for s in SPLITS))


if __name__ == "__main__":
    main()
