"""HOI ablation: HOI students trained with none and with mipd on SynthSitu-HOI, scored with
the HICO-DET mAP on the zero-shot split's unseen and seen classes.

    python benchmarks/hoi_ablation.py [--out DIR] [--epochs N] [--zero-shot unseen_verb]
                                      [--teacher DIR] [--train-seed N] [--quick]

The teacher judges the pair situations (crops of the training interactions) for the
rationales and NMPA. By default it is the SDK's SynthSitu teacher trained on pair crops of
every interaction of its own SynthSitu-HOI sample (another generator seed: it never sees the
students' images), unseen verbs included: like quickstart's teacher it stands in for a
foundation model that has seen everything but the benchmark (students never see an unseen
verb), and it sees pairs the way it will judge them. ``--teacher DIR`` takes a trained teacher
instead (quickstart's, trained on whole SynthSitu scenes). ``--train-seed N`` trains
further students on the same data (their dev hold-out and batch order), beside the first
ones. Writes ``hoi_ablation.json`` (``hoi_ablation-seedN.json``) =
{"none": M, "mipd": M, ...} and prints a table; every stage is kept, so a rerun reuses
what is done. The default takes about 35 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mipd_edge.cli import setup_logging
from mipd_edge.data.hico import find_space, image_dir, rare_classes, read_hoi_annotations
from mipd_edge.data.hoi_pairs import CROP_MARGIN
from mipd_edge.hoi_metrics import evaluate_hoi
from mipd_edge.pipeline import TEACHER_SEED_OFFSET, stage, training_mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/hoi-ablation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trainval", type=int, default=1600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--zero-shot", default="unseen_verb", choices=["unseen_verb", "unseen_combination"])
    parser.add_argument("--teacher", default=None,
                        help="a trained SynthSitu teacher (default: train one here on the pair crops)")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--train-seed", type=int, default=None, help="the students' seed (default: --seed)")
    parser.add_argument("--quick", action="store_true", help="a few minutes: shows the pipeline, not the method")
    args = parser.parse_args()
    setup_logging()
    if args.quick:
        args.trainval, args.test, args.epochs = 240, 60, 3

    from mipd_edge.data.synthsitu.hoi import generate_hoi
    from mipd_edge.train.config import TrainConfig
    from mipd_edge.train.hoi import distill_hoi, write_hoi_pairs
    from mipd_edge.train.rationales import generate_rationales

    out = Path(args.out) / args.zero_shot
    data = out / "data"
    data_params = {"seed": args.seed, "trainval": args.trainval, "test": args.test}
    stage(out, "data", data_params, lambda: generate_hoi(data, progress=True, **data_params))
    if args.teacher:
        teacher = Path(args.teacher)
    else:
        teacher, teacher_data = out / "teacher", out / "teacher-data"
        teacher_params = {**data_params, "seed": args.seed + TEACHER_SEED_OFFSET}
        stage(out, "teacher-data", teacher_params, lambda: generate_hoi(teacher_data, progress=True, **teacher_params))
        cfg = TrainConfig(epochs=args.teacher_epochs, image_size=args.input_size, seed=args.seed)
        stage(out, "teacher", {"data": teacher_params, "crop_margin": CROP_MARGIN, "train": cfg.to_json()},
              lambda: train_pair_teacher(teacher_data, out / "teacher-pairs", teacher, cfg))
    pairs, rationales = out / "pairs", out / "rationales.jsonl"
    prep = {"data": data_params, "teacher": str(teacher.resolve()), "zero_shot": args.zero_shot,
            "crop_margin": CROP_MARGIN}

    def make_rationales() -> dict:
        rationales.unlink(missing_ok=True)
        write_hoi_pairs(data, pairs, args.zero_shot)
        return generate_rationales(pairs, teacher, rationales)
    stage(out, "pairs-rationales", prep, make_rationales)

    space = find_space(data)
    test = read_hoi_annotations(data / "test_hico.json", space)
    rare = rare_classes(space, read_hoi_annotations(data / "trainval_hico.json", space))
    results = {}
    train_seed = args.seed if args.train_seed is None else args.train_seed
    suffix = "" if train_seed == args.seed else f"-seed{train_seed}"
    for method in ("none", "mipd"):
        cfg = TrainConfig(method=method, epochs=args.epochs, image_size=args.input_size, seed=train_seed,
                          batch_size=16)
        student = out / f"student-{method}{suffix}"
        needs = prep if method == "mipd" else {"data": data_params, "zero_shot": args.zero_shot}
        params = {"needs": needs, "train": cfg.to_json()}
        stage(out, f"student-{method}{suffix}", params, lambda: distill_hoi(
            data, student, cfg, args.zero_shot, teacher, rationales, pairs,
            **training_mode(out, f"student-{method}{suffix}", params, student))["best_selection_score"])

        def score() -> dict:
            from mipd_edge.data.hoi_vocabulary import hoi_vocabulary
            from mipd_edge.deploy.preprocess import Preprocess
            from mipd_edge.models.store import load_student
            from mipd_edge.text import model_text_encoder
            from mipd_edge.train.hoi import HoiTrainSet, gold_pair_verbs, predict_hoi

            model, info = load_student(student)
            vocab = hoi_vocabulary(space, range(1, len(space.verbs) + 1), model_text_encoder(info))
            preprocess = Preprocess.from_json(info["preprocess"])
            preds = predict_hoi(model, test, image_dir(data, "test"), vocab, preprocess, space)
            metrics = evaluate_hoi(test, preds, space, rare, args.zero_shot)
            metrics.pop("per_class")
            pairs = HoiTrainSet(test, image_dir(data, "test"), space, vocab, preprocess, progress=False)
            metrics["gold_pair_verb_top1"] = gold_pair_verbs(model, pairs, set(info["training_verbs"]))
            return metrics
        results[method] = stage(out, f"score-{method}{suffix}", {"student": str(student), "needs": needs,
                                                         "train": cfg.to_json()}, score)
    results["setup"] = {**data_params, "train_seed": train_seed, "epochs": args.epochs, "input_size": args.input_size,
                        "zero_shot": args.zero_shot, "teacher": str(teacher)}
    written = out / f"hoi_ablation{suffix}.json"
    written.write_text(json.dumps(results, indent=1))

    print(f"\nSynthSitu-HOI test ({args.test} images), zero-shot {args.zero_shot}, HICO-DET mAP (VOC AP, %)")
    print(f"{'method':<8}{'full':>8}{'unseen':>8}{'seen':>8}")
    for method in ("none", "mipd"):
        m = results[method]
        print(f"{method:<8}{m['full']:8.2f}{m['unseen']:8.2f}{m['seen']:8.2f}")
    print(f"mipd - none: unseen {results['mipd']['unseen'] - results['none']['unseen']:+.2f}, "
          f"seen {results['mipd']['seen'] - results['none']['seen']:+.2f}")
    print("verb top-1 (%) at the ground-truth pairs, over all verbs (unseen: among unseen verbs only)")
    for method in ("none", "mipd"):
        v = {k: "-" if x is None else f"{x:.1f}" for k, x in results[method]["gold_pair_verb_top1"].items()
             if k != "pairs"}
        print(f"{method:<8}seen {v['seen']}  unseen {v['unseen']} ({v['unseen_among_unseen']})")
    print(f"written: {written}")


def train_pair_teacher(data: Path, crops: Path, teacher: Path, cfg) -> float:
    """The SynthSitu teacher on crops of every trainval interaction of ``data`` (its own
    sample), all verbs; every tenth crop is held out for checkpoint selection. A stage of
    this run: an earlier teacher in its folder is replaced."""
    from mipd_edge.files import read_json, write_json
    from mipd_edge.train.hoi import write_hoi_pairs
    from mipd_edge.train.teacher_train import train_teacher

    write_hoi_pairs(data, crops, zero_shot=None)
    crops_of = read_json(crops / "train.json")
    names = sorted(crops_of)
    write_json(crops / "dev.json", {n: crops_of[n] for n in names[::10]}, indent=None)
    write_json(crops / "train.json", {n: crops_of[n] for i, n in enumerate(names) if i % 10}, indent=None)
    return train_teacher(crops, teacher, cfg, overwrite=True, sources=[data])["best_selection_score"]


if __name__ == "__main__":
    main()
