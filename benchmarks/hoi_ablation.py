"""HOI ablation: HOI students trained without distillation and with MIPD's variants on
SynthSitu-HOI, over training seeds, scored with the HICO-DET mAP (the official evaluation:
11-point AP, no fall-back matching; default and known-object modes) on the zero-shot
split's unseen and seen classes.

    python benchmarks/hoi_ablation.py [--out DIR] [--rows none,mipd,all-pairs,authors-losses,ramped] [--seeds 0,1,2]
                                      [--epochs N] [--zero-shot unseen_verb] [--int8 mipd,...] [--int8-recipes ptq,qat]
                                      [--results benchmarks/results/hoi-ablation-unseen_verb.json] [--quick]

Rows: ``none`` (detection losses only), ``mipd`` (distillation at the labelled pairs),
``all-pairs`` (also at every unlabelled human-object pair of a training image: the
teacher's judgment of their crops, ``MipdConfig.pairs``), ``ramped`` (mipd whose terms
count from a quarter of training on, fully from half way: detection settles first),
``authors-losses`` (the authors' loss shapes on our knowledge: NMPA's InfoNCE replaced by a
cosine hinge on the negative rationales, distillation by L1). ``--calibrate`` rows score
``none`` and ``mipd`` again with a seen-verb bias learnt without unseen data
(``train/hoi_calibration.py``): rows of their own, not MIPD. The teacher judges the pair
situations (crops of the training interactions) for the rationales and NMPA. It is the
SDK's SynthSitu teacher trained on pair crops of every interaction of its own SynthSitu-HOI
sample (generator seed + 1000: it never sees the students' images, checked through its
``seen.json``), unseen verbs included: like quickstart's teacher it stands in for a
foundation model that has seen everything but the benchmark. ``--int8 ROWS`` also
quantizes those rows' first-seed students with each recipe of ``--int8-recipes`` (``ptq``:
NNCF PTQ; ``qat``: PTQ then 3 epochs of quantization-aware self-distillation;
``accuracy-control``: PTQ of the OpenVINO encoder reverting layers until its held-out mAP
drop is within 1) and scores its test mAP in FP32 and INT8 through the Predictor on ONNX
Runtime and OpenVINO.

Every stage is kept, so a rerun (or an interrupted run) reuses what is done and resumes
training from checkpoints. Writes ``DIR/<zero-shot>/hoi_ablation.json`` and, with
``--results``, the results file ({"setup", "seeds": {row: {seed: M}}, "mean_over_seeds",
"int8": {row: {recipe: M}}}); prints a table. About 12 minutes per student on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.data.hico import find_space, image_dir, rare_classes, read_hoi_annotations
from mipd_edge.data.hoi_pairs import CROP_MARGIN
from mipd_edge.hoi_metrics import evaluate_hoi
from mipd_edge.machine import device_info, library_versions
from mipd_edge.pipeline import TEACHER_SEED_OFFSET, stage, training_mode

# row -> (method, MIPD variant)
ROWS = {"none": ("none", None), "mipd": ("mipd", None), "all-pairs": ("mipd", "all-pairs"),
        "authors-losses": ("mipd", "authors-losses"), "ramped": ("mipd", "ramped")}
SUMMARY = ("full", "unseen", "seen", "rare", "non_rare")
CALIB_SIZE = 300  # INT8 calibration images: training images without unseen classes
# INT8 recipe -> quantize_bundle's arguments besides the calibration size
INT8_RECIPES: dict[str, dict[str, Any]] = {
    "auto": {"method": "auto"},
    "ptq": {"method": "ptq"},
    "qat": {"method": "qat", "qat_epochs": 3},
    "accuracy-control": {"method": "ptq", "max_drop": 1.0, "formats": ["openvino"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/hoi-ablation")
    parser.add_argument("--seed", type=int, default=0, help="the data's generator seed")
    parser.add_argument("--trainval", type=int, default=1600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--zero-shot", default="unseen_verb", choices=["unseen_verb", "unseen_combination"])
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0,1,2", help="the students' training seeds")
    parser.add_argument("--int8", default="", help="rows whose first-seed students are also quantized")
    parser.add_argument("--int8-recipes", default="ptq", help=f"how --int8 quantizes: {', '.join(INT8_RECIPES)}")
    parser.add_argument("--calibrate", default="none,mipd",
                        help="rows also scored with the seen-verb calibration (rows of their own, not MIPD)")
    parser.add_argument("--results", default=None, help="write the results file here too")
    parser.add_argument("--quick", action="store_true", help="a few minutes: shows the pipeline, not the method")
    args = parser.parse_args()
    setup_logging()
    if args.quick:
        args.trainval, args.test, args.epochs, args.teacher_epochs = 240, 60, 3, 2
    rows = names(args.rows)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"hoi_ablation: unknown rows {unknown}; choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    calibrated = names(args.calibrate)
    quantized = names(args.int8)
    if not set(quantized) <= set(rows) or not set(calibrated) <= set(ROWS):
        raise SystemExit(f"hoi_ablation: --int8 names rows of --rows ({', '.join(rows)}), --calibrate rows of "
                         f"{', '.join(ROWS)}")
    calibrated = [r for r in calibrated if r in rows]  # rows not trained in this run have nothing to calibrate
    recipes = names(args.int8_recipes)
    if not set(recipes) <= set(INT8_RECIPES):
        raise SystemExit(f"hoi_ablation: --int8-recipes are among {', '.join(INT8_RECIPES)}")

    from mipd_edge.data.synthsitu.hoi import SynthHoiConfig, generate_hoi
    from mipd_edge.train.config import TrainConfig
    from mipd_edge.train.distill import distill
    from mipd_edge.train.hoi import write_hoi_pairs
    from mipd_edge.train.hoi_calibration import calibrate_seen_bias
    from mipd_edge.train.rationales import generate_rationales
    from mipd_edge.train.task import TrainingInputs
    from mipd_lab.variants import variant_overrides

    out = Path(args.out) / args.zero_shot
    data = out / "data"
    data_params = {"seed": args.seed, "trainval": args.trainval, "test": args.test}
    stage(out, "data", data_params, lambda: generate_hoi(data, SynthHoiConfig(**data_params)))
    teacher, teacher_data = out / "teacher", out / "teacher-data"
    teacher_params = {**data_params, "seed": args.seed + TEACHER_SEED_OFFSET}
    stage(out, "teacher-data", teacher_params, lambda: generate_hoi(teacher_data, SynthHoiConfig(**teacher_params)))
    teacher_cfg = TrainConfig(epochs=args.teacher_epochs, image_size=args.input_size, seed=args.seed)
    stage(out, "teacher", {"data": teacher_params, "crop_margin": CROP_MARGIN, "train": teacher_cfg.to_json()},
          lambda: train_pair_teacher(teacher_data, out / "teacher-pairs", teacher, teacher_cfg))
    pairs, rationales = out / "pairs", out / "rationales.jsonl"
    prep = {"data": data_params, "teacher": str(teacher.resolve()), "zero_shot": args.zero_shot,
            "crop_margin": CROP_MARGIN, "unlabelled": True}

    def make_rationales() -> dict:
        rationales.unlink(missing_ok=True)
        write_hoi_pairs(data, pairs, args.zero_shot, unlabelled=True)
        return generate_rationales(pairs, teacher, rationales)
    stage(out, "pairs-rationales", prep, make_rationales)

    space = find_space(data)
    test = read_hoi_annotations(data / "test_hico.json", space)
    rare = rare_classes(space, read_hoi_annotations(data / "trainval_hico.json", space))
    results: dict[str, dict[str, Any]] = {row: {} for row in rows}
    students: dict[str, Path] = {}
    int8: dict[str, Any] = {}
    provenance = {"command": "python benchmarks/hoi_ablation.py " + " ".join(sys.argv[1:]),
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "machine": device_info(), "versions": library_versions()}
    setup = {**data_params, "epochs": args.epochs, "input_size": args.input_size, "seeds": seeds,
             "zero_shot": args.zero_shot, "teacher": str(teacher),
             "teacher_saw": {"data": {**teacher_params, "generator": "SynthSitu-HOI"},
                             "what": "crops of every trainval interaction of its own sample, all verbs (unseen ones "
                                     "included); none of the students' images (teacher/seen.json, checked at "
                                     "distillation)"},
             "metric": "HICO-DET official: 11-point AP, best-pair matching without fall-back"}

    def write_report() -> dict[str, Any]:
        """The results so far (rewritten after every scored student, so an interrupted run leaves them)."""
        done = {row: runs for row, runs in results.items() if runs}
        means = {row: mean_metrics(runs.values()) for row, runs in done.items()}
        report = {"provenance": provenance, "setup": setup, "seeds": done, "mean_over_seeds": means,
                  "goal": goal(means)}
        if int8:
            report["int8"] = int8
        for path in [out / "hoi_ablation.json"] + ([Path(args.results)] if args.results else []):
            path.write_text(json.dumps(report, indent=1))
        return report

    def row_config(row: str, seed: int) -> tuple[TrainConfig, dict[str, Any]]:
        """A row's training config and what its stages depend on."""
        method, variant = ROWS[row]
        cfg = TrainConfig(method=method, epochs=args.epochs, image_size=args.input_size, seed=seed, batch_size=16,
                          **(variant_overrides(variant) if variant else {}))
        needs = prep if method == "mipd" else {"data": data_params, "zero_shot": args.zero_shot}
        return cfg, {"needs": needs, "train": cfg.to_json()}

    for seed in seeds:  # seed by seed, so that every row has its first seeds early
        for row in rows:
            cfg, params = row_config(row, seed)
            name = f"{row}-seed{seed}"
            student = students[name] = out / f"student-{name}"
            stage(out, f"student-{name}", params, lambda: distill(
                data, student, cfg, TrainingInputs(teacher, rationales, pairs, args.zero_shot),
                training_mode(out, f"student-{name}", params, student))["best_selection_score"])
            results[row][str(seed)] = stage(out, f"score-{name}", {"student": str(student), **params},
                                            lambda: score(student, data, space, test, rare, args.zero_shot))
            write_report()
            if row in quantized and seed == seeds[0]:  # early: what INT8 costs is known after one student
                for recipe in recipes:
                    # PTQ keeps the stage name and parameters it had before there were recipes
                    suffix = "" if recipe == "ptq" else f"-{recipe}"
                    params = {"student": str(student), "calib_size": CALIB_SIZE,
                              **({} if recipe == "ptq" else INT8_RECIPES[recipe])}
                    int8.setdefault(row, {})[recipe] = stage(out, f"int8{suffix}-{name}", params, lambda: quantized_map(
                        student, data, out / f"bundle-int8{suffix}-{row}", test, rare, args.zero_shot,
                        **INT8_RECIPES[recipe]))
                    write_report()
    for row in calibrated:
        # one calibration student (the first seed's config, without a few training verbs) per row
        cfg, params = row_config(row, seeds[0])
        folder = out / f"calibration-{row}"
        calibration = stage(out, f"calibration-{row}", params, lambda: calibrate_seen_bias(
            data, folder, cfg, TrainingInputs(teacher, rationales, pairs, args.zero_shot),
            run=training_mode(out, f"calibration-{row}", params, folder)))
        results[f"{row}+calibration"] = {
            str(seed): {**stage(out, f"score-{row}+calibration-seed{seed}",
                                {"student": str(students[f"{row}-seed{seed}"]), "bias": calibration["bias"]},
                                lambda: score(students[f"{row}-seed{seed}"], data, space, test, rare, args.zero_shot,
                                              calibration["bias"])),
                        "calibration": calibration}
            for seed in seeds}
    print_table(write_report(), args)


def names(arg: str) -> list[str]:
    """The names of a comma-separated option."""
    return [n.strip() for n in arg.split(",") if n.strip()]


def score(student: Path, data: Path, space, test, rare, zero_shot: str, bias: float = 0.0) -> dict[str, Any]:
    """Test mAP (default and known-object modes) with every verb of the space, and verb top-1
    at the ground-truth pairs; ``bias`` is subtracted from the training verbs' logits (the
    seen-verb calibration)."""
    from mipd_edge.data.hoi_vocabulary import hoi_vocabulary
    from mipd_edge.deploy.preprocess import Preprocess
    from mipd_edge.models.inference import interaction_decoder, predict_hoi
    from mipd_edge.models.store import load_student
    from mipd_edge.text import model_text_encoder
    from mipd_edge.train.hoi import HoiTrainSet, gold_pair_verbs

    model, info = load_student(student)
    vocab = hoi_vocabulary(space, range(1, len(space.verbs) + 1), model_text_encoder(info))
    preprocess = Preprocess.from_json(info["preprocess"])
    verb_bias = {v: bias for v in info["training_verbs"]} if bias else None
    preds = predict_hoi(model, test, image_dir(data, "test"), interaction_decoder(model, vocab, space, verb_bias),
                        preprocess)
    metrics = evaluate_hoi(test, preds, space, rare, zero_shot)
    metrics.pop("per_class")
    known_object = evaluate_hoi(test, preds, space, rare, zero_shot, mode="ko")
    metrics["known_object"] = {k: known_object[k] for k in SUMMARY}
    pairs = HoiTrainSet(test, image_dir(data, "test"), space, vocab, preprocess, progress=False)
    metrics["gold_pair_verb_top1"] = gold_pair_verbs(model, pairs, set(info["training_verbs"]), verb_bias=verb_bias)
    return metrics


def quantized_map(student: Path, data: Path, bundle: Path, test, rare, zero_shot: str, method: str,
                  **quantize: Any) -> dict[str, Any]:
    """An INT8 bundle of a student (accuracy gate on its held-out training images) and its
    test mAP in FP32 and INT8 on each runtime it has graphs for, through the Predictor."""
    from mipd_edge.config import QuantizeConfig
    from mipd_edge.context import RunContext
    from mipd_edge.deploy.bundle import graph_format
    from mipd_edge.deploy.predictor import Predictor
    from mipd_edge.evaluation import evaluate_hoi_predictor
    from mipd_edge.quantize import quantize_bundle

    recipe = {**quantize, "formats": tuple(quantize.get("formats", ("onnx", "openvino")))}
    manifest = quantize_bundle(student, data, bundle, QuantizeConfig(method=method, calib_size=CALIB_SIZE, **recipe),
                               RunContext(overwrite=True))
    out: dict[str, Any] = {"gate": manifest.metrics, "quantization": manifest.quantization}
    held = [b for b in ("onnxruntime", "openvino") if graph_format(b, "int8", manifest.graphs) in manifest.graphs]
    for backend in held:
        for precision in ("fp32", "int8"):
            with Predictor(bundle, backend=backend, precision=precision) as predictor:
                m = evaluate_hoi_predictor(predictor, test, image_dir(data, "test"), rare=rare, zero_shot=zero_shot)
            out[f"{backend} {precision}"] = {k: m[k] for k in SUMMARY}
        out[f"{backend} int8 - fp32"] = {k: out[f"{backend} int8"][k] - out[f"{backend} fp32"][k]
                                         for k in ("full", "unseen", "seen")}
    return out


def mean_metrics(runs) -> dict[str, Any]:
    """Mean and range over seeds of the summary mAPs and of gold-pair verb top-1."""
    runs = list(runs)
    out: dict[str, Any] = {"seeds": len(runs)}
    for key in SUMMARY:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = float(np.mean(values))
            out[f"{key}_range"] = [float(min(values)), float(max(values))]
    out["gold_pair_verb_top1"] = {k: float(np.mean([r["gold_pair_verb_top1"][k] for r in runs]))
                                  for k in ("seen", "unseen", "unseen_among_unseen")
                                  if all(r["gold_pair_verb_top1"].get(k) is not None for r in runs)}
    return out


# issue 17's goal for a distilled row against no distillation, means over seeds (mAP)
GOAL = {"unseen": 3.0, "seen": -1.0}


def goal(means: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each row against ``none`` on the mean mAP of unseen and seen classes, and whether it
    reaches the goal (at least +3 on unseen classes, no more than 1 below on seen ones)."""
    if "none" not in means:
        return {}
    out: dict[str, Any] = {"wanted": {"unseen": f">= +{GOAL['unseen']}", "seen": f">= {GOAL['seen']}"}}
    for row, m in means.items():
        if row != "none":
            delta = {k: m[k] - means["none"][k] for k in GOAL}
            out[f"{row} - none"] = {**delta, "seeds": m["seeds"], "met": all(delta[k] >= GOAL[k] for k in GOAL)}
    return out


def print_table(report: dict[str, Any], args) -> None:
    print(f"\nSynthSitu-HOI test ({args.test} images), zero-shot {args.zero_shot}, HICO-DET mAP (official, %)")
    print(f"{'row':<18}{'seed':>6}{'full':>8}{'unseen':>8}{'seen':>8}   gold-pair verb top-1 seen / unseen")
    for row, seeds in report["seeds"].items():
        for seed, m in seeds.items():
            v = m["gold_pair_verb_top1"]
            print(f"{row:<18}{seed:>6}{m['full']:8.2f}{m['unseen']:8.2f}{m['seen']:8.2f}   "
                  f"{v['seen'] or 0:.1f} / {v['unseen'] or 0:.1f}")
        mean = report["mean_over_seeds"][row]
        print(f"{row:<18}{'mean':>6}{mean['full']:8.2f}{mean['unseen']:8.2f}{mean['seen']:8.2f}")
    for name, d in report["goal"].items():
        if name != "wanted":
            print(f"{name}: unseen {d['unseen']:+.2f}, seen {d['seen']:+.2f} ({d['seeds']} seeds; goal "
                  f"{'met' if d['met'] else 'not met'})")
    for row, by_recipe in report.get("int8", {}).items():
        for recipe, q in by_recipe.items():
            for key in [k for k in q if k.endswith("int8 - fp32")]:
                d = q[key]
                print(f"INT8 - FP32 ({row}, {recipe}, {key.split()[0]}): full {d['full']:+.2f}, "
                      f"unseen {d['unseen']:+.2f}, seen {d['seen']:+.2f} mAP")


def train_pair_teacher(data: Path, crops: Path, teacher: Path, cfg) -> float:
    """The SynthSitu teacher on crops of every trainval interaction of ``data`` (its own
    sample), all verbs; every tenth crop is held out for checkpoint selection. A stage of
    this run: an earlier teacher in its folder is replaced."""
    from mipd_edge.context import RunContext
    from mipd_edge.files import read_json, write_json
    from mipd_edge.train.hoi import write_hoi_pairs
    from mipd_edge.train.teacher_train import train_teacher

    write_hoi_pairs(data, crops, zero_shot=None)
    crops_of = read_json(crops / "train.json")
    names = sorted(crops_of)
    write_json(crops / "dev.json", {n: crops_of[n] for n in names[::10]}, indent=None)
    write_json(crops / "train.json", {n: crops_of[n] for i, n in enumerate(names) if i % 10}, indent=None)
    return train_teacher(crops, teacher, cfg, RunContext(overwrite=True), sources=[data])["best_selection_score"]


if __name__ == "__main__":
    main()
