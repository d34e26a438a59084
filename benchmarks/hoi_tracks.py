"""Tracks in interaction streams: does each interaction keep one id, and is its verb steadier
and no less right with the per-track vote, on SynthSitu-HOI clips?

    python benchmarks/hoi_tracks.py [--seeds 0,1,2] [--workdir runs/hoi-tracks] [--segments 10]
        [--frames 30] [--epochs 30] [--threshold 0.1] [--out FILE]

Per data draw (``WORKDIR/seedN``, made here and kept: a SynthSitu-HOI sample of generator seed
N, a student without distillation trained on it, its FP32 bundle): a clip of ``--segments``
test images, each held for ``--frames`` frames while a camera pans slowly across it (a pixel a
frame) with sensor noise and light changes, written as an mp4 and read back. The bundle answers
every frame at ``--threshold`` (its answers do not depend on tracking; a low threshold, as a
stream that must not miss an interaction would set, lets the uncertain answers through whose
verbs flicker); ``InteractionTracks`` then follows them in
order with each smoothing method, as a stream would. An answered interaction is matched to the
segment's gold pair it overlaps (IoU >= 0.5 for both the person and the object, the object of
the same category). Per method: the verb changes per 100 frames of an interaction's track,
how often a matched interaction's verb is one of its pair's gold verbs, and per gold pair
the ids its matches carried (1 is ideal: one identity for one pair across the segment) and
the share of the segment's frames it was followed in. Writes the JSON.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from stream_smoothing import FPS, clip_run, provenance

from mipd_edge import Predictor
from mipd_edge.config import ExportConfig, SmoothingConfig
from mipd_edge.data.hico import find_space, image_dir, read_hoi_annotations
from mipd_edge.data.hoi_vocabulary import category_of
from mipd_edge.deploy.image import load_image
from mipd_edge.deploy.streams import open_source
from mipd_edge.deploy.streams.tracks import InteractionTracks
from mipd_edge.deploy.streams.writers import VideoEncoder
from mipd_edge.files import write_json
from mipd_edge.metrics import box_iou
from mipd_edge.pipeline import stage, training_mode
from mipd_edge.tables import render_table

METHODS = {"as answered": SmoothingConfig(smooth="off"), "ema 0.3": SmoothingConfig(smooth="ema", smooth_alpha=0.3),
           "vote 5 (default)": SmoothingConfig()}
SIZE = (320, 240)
MATCH_IOU = 0.5


def prepare(work: Path, seed: int, epochs: int) -> Path:
    """The draw's data, student and FP32 bundle, each a stage kept for the next run."""
    from mipd_edge.context import RunContext
    from mipd_edge.data.synthsitu.hoi import SynthHoiConfig, generate_hoi
    from mipd_edge.export import export_bundle
    from mipd_edge.train.config import TrainConfig
    from mipd_edge.train.distill import distill
    from mipd_edge.train.task import TrainingInputs

    data_params = {"seed": seed, "trainval": 1600, "test": 200}
    stage(work, "data", data_params, lambda: generate_hoi(work / "data", SynthHoiConfig(**data_params)))
    cfg = TrainConfig(method="none", epochs=epochs, image_size=128, seed=0, batch_size=16)
    params = {"data": data_params, "train": cfg.to_json()}
    stage(work, "student", params, lambda: distill(
        work / "data", work / "student", cfg, TrainingInputs(zero_shot="unseen_verb"),
        training_mode(work, "student", params, work / "student"))["best_selection_score"])
    stage(work, "bundle", params, lambda: export_bundle(work / "student", work / "bundle", ExportConfig(
        formats=("onnx",)), data=work / "data", run=RunContext(overwrite=True)).precision)
    return work / "bundle"


def write_clip(data: Path, out: Path, segments: int, frames: int, seed: int) -> list[list[dict]]:
    """The clip's mp4 and, per frame, its gold pairs in frame pixels: person and object boxes,
    object category and the pair's verbs."""
    rng = np.random.default_rng(seed)
    space = find_space(data)
    test = [im for im in read_hoi_annotations(data / "test_hico.json", space) if im.pairs]
    truth: list[list[dict]] = []
    encoder = VideoEncoder(out, FPS, SIZE, "h264")
    for i in rng.permutation(len(test))[:segments]:
        image = test[i]
        picture = load_image(image_dir(data, "test") / image.file_name)
        h, w = picture.shape[:2]
        scale = min(SIZE[0] / w, SIZE[1] / h)
        x0, y0 = (SIZE[0] - int(w * scale)) // 2, (SIZE[1] - int(h * scale)) // 2
        pairs: dict[tuple[int, int], set[str]] = defaultdict(set)
        for p in image.pairs:
            pairs[(p.subject, p.object)].add(space.verbs[p.verb - 1])
        for f in range(frames):  # a slow pan, a noisy sensor, changing light
            dx = f - frames // 2
            move = np.float32([[scale, 0, x0 + dx], [0, scale, y0]])
            frame = cv2.warpAffine(picture, move, SIZE, borderValue=(114, 114, 114)).astype(np.float32)
            frame = frame * rng.uniform(0.9, 1.1) + rng.normal(0, 5, frame.shape)
            encoder.write(np.clip(frame, 0, 255).astype(np.uint8))
            at = lambda box: [box[0] * scale + x0 + dx, box[1] * scale + y0, box[2] * scale + x0 + dx,  # noqa: E731
                              box[3] * scale + y0]
            truth.append([{"pair": f"{i}:{s}:{o}", "human": at(image.boxes[s]), "object": at(image.boxes[o]),
                           "category": image.categories[o], "verbs": verbs} for (s, o), verbs in pairs.items()])
    encoder.close()
    return truth


def answer_clip(bundle: Path, clip: Path, threshold: float) -> list:
    """Each frame's interactions, as the bundle answers them."""
    with Predictor(bundle, backend="onnxruntime") as predictor:
        predictor.threshold = threshold
        return [predictor(frame.image) for frame in open_source(clip)]


def gold_pair(situation, gold: list[dict]) -> dict | None:
    """The gold pair this interaction overlaps best (both boxes at IoU >= 0.5, same object category)."""
    human, thing = situation.roles["agent"], situation.roles["item"]
    best, best_iou = None, MATCH_IOU
    for g in gold:
        if category_of(thing.noun) != g["category"] or human.box is None or thing.box is None:
            continue
        iou = min(box_iou(human.box, g["human"]), box_iou(thing.box, g["object"]))
        if iou >= best_iou:
            best, best_iou = g, iou
    return best


def score(answers: list, truth: list[list[dict]], cfg: SmoothingConfig, frames: int) -> dict[str, Any]:
    tracks = InteractionTracks(cfg)
    verbs_of: dict[int, list[str]] = defaultdict(list)
    right, matched = 0, 0
    ids: dict[str, set[int]] = defaultdict(set)
    followed: dict[str, int] = defaultdict(int)
    for f, answer in enumerate(answers):
        if f % frames == 0:
            tracks = InteractionTracks(cfg)  # another scene: a stream would see every track lost
        for s in tracks(answer):
            if s.track is None:
                continue
            verbs_of[s.track + 10_000 * (f // frames)].append(s.verb)
            g = gold_pair(s, truth[f])
            if g is None:
                continue
            matched += 1
            right += s.verb in g["verbs"]
            ids[g["pair"]].add(s.track)
            followed[g["pair"]] += 1
    track_frames = sum(len(v) for v in verbs_of.values())
    changes = sum(sum(a != b for a, b in zip(v, v[1:])) for v in verbs_of.values())
    pairs = {g["pair"] for gold in truth for g in gold}
    return {"changes_per_100": 100 * changes / max(1, track_frames), "verb_right": 100 * right / max(1, matched),
            "matched": matched, "track_frames": track_frames,
            "ids_per_pair": float(np.mean([len(ids[p]) for p in pairs if ids[p]])) if ids else None,
            "pairs_followed": 100 * len(ids) / len(pairs),
            "frames_followed": 100 * float(np.mean([min(1.0, followed[p] / (frames - 1)) for p in pairs]))}


def main() -> None:
    def more(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--epochs", type=int, default=30, help="the students' training epochs")
        parser.add_argument("--threshold", type=float, default=0.1, help="the score an interaction needs")
    args, out, date, seeds = clip_run(__doc__, "runs/hoi-tracks", 10, 30, "runs/hoi-tracks/hoi_tracks.json", more)
    per_seed: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        work = Path(args.workdir) / f"seed{seed}"
        bundle = prepare(work, seed, args.epochs)
        clip = out.parent / f"clip-seed{seed}.mp4"
        truth = write_clip(work / "data", clip, args.segments, args.frames, seed)
        answers = answer_clip(bundle, clip, args.threshold)
        per_seed[str(seed)] = {name: score(answers, truth, cfg, args.frames) for name, cfg in METHODS.items()}
    keys = ("changes_per_100", "verb_right", "ids_per_pair", "pairs_followed", "frames_followed")
    summary = {name: {k: float(np.mean([per_seed[s][name][k] for s in per_seed if per_seed[s][name][k] is not None]))
                      for k in keys} for name in METHODS}
    results = {"provenance": provenance("hoi_tracks.py", date),
               "setup": {"segments": args.segments, "frames_per_segment": args.frames, "fps": FPS, "seeds": seeds,
                         "threshold": args.threshold,
                         "student": f"method none, {args.epochs} epochs, SynthSitu-HOI 1,600 trainval images",
                         "match": f"IoU >= {MATCH_IOU} for the person and the object, same category",
                         "methods": {k: vars(v) for k, v in METHODS.items()}},
               "per_seed": per_seed, "summary": summary}
    write_json(out, results)
    table = [["method", "seed", "verb changes / 100 track frames", "verb right %", "ids per gold pair",
              "gold pairs followed %", "their frames followed %"]]
    for name in METHODS:
        for s, row in [*((s, per_seed[s][name]) for s in per_seed), ("mean", summary[name])]:
            table.append([name, s, f"{row['changes_per_100']:.1f}", f"{row['verb_right']:.1f}",
                          "-" if row["ids_per_pair"] is None else f"{row['ids_per_pair']:.2f}",
                          f"{row['pairs_followed']:.0f}", f"{row['frames_followed']:.0f}"])
    print(render_table(table, left=2))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
