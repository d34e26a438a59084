"""Steady answers over time: how often the verb changes, and how often it is right, with each
frame's answer as the model gave it against the smoothed ones, on SynthSitu clips whose true
verb changes at known frames.

    python benchmarks/stream_smoothing.py [--seeds 0,1,2] [--workdir runs/int8-recipe]
        [--segments 12] [--frames 15] [--out FILE]

Per data draw (``WORKDIR/seedN``: its SynthSitu data and INT8 bundle, as
``benchmarks/int8_recipe.py`` leaves them): a clip of ``--segments`` test images, each of
another verb than the one before and held for ``--frames`` frames with camera-like changes per
frame (a shift of a few pixels, sensor noise, a brightness change), written as an mp4 and
streamed through the bundle with smoothing off (``StreamSet``). The smoothers then run over the
recorded answers in order, as they would in the stream (an answer does not depend on them).
Per method: verb changes per 100 frames, top-1 against the truth per frame, the delay of each
true change (frames from the change until the answer is the new verb, where it becomes that
verb within the segment) and the extra delay (that, less the frames the unsmoothed answer
itself took). Writes the JSON and a picture of one clip's timeline.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from mipd_edge import Predictor
from mipd_edge.cli import setup_logging
from mipd_edge.config import SmoothingConfig
from mipd_edge.data.swig import SituDataset
from mipd_edge.data.synthsitu.video import on_canvas
from mipd_edge.deploy.image import load_image
from mipd_edge.deploy.streams import StreamSet, open_source
from mipd_edge.deploy.streams.smoothing import VerbSmoother
from mipd_edge.deploy.streams.writers import VideoEncoder
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.tables import render_table

METHODS = {"as answered": SmoothingConfig(smooth="off"), "ema 0.5": SmoothingConfig(smooth="ema", smooth_alpha=0.5),
           "ema 0.3": SmoothingConfig(smooth="ema", smooth_alpha=0.3),
           "ema 0.2": SmoothingConfig(smooth="ema", smooth_alpha=0.2),
           "vote 3": SmoothingConfig(smooth_window=3), "vote 5 (default)": SmoothingConfig()}
SIZE = (256, 192)
FPS = 15


def write_clip(data: Path, out: Path, segments: int, frames: int, seed: int) -> list[str]:
    """The clip's mp4 and its true verb per frame."""
    rng = np.random.default_rng(seed)
    test = SituDataset(data, "test")
    picks: list[int] = []
    for i in rng.permutation(len(test)):
        verb = test.annotations[test.names[i]].verb
        if not picks or verb != test.annotations[test.names[picks[-1]]].verb:
            picks.append(int(i))
        if len(picks) == segments:
            break
    truth: list[str] = []
    encoder = VideoEncoder(out, FPS, SIZE, "h264")
    for i in picks:
        canvas = on_canvas(load_image(test.image_dir / test.names[i]), SIZE)
        for _ in range(frames):  # a hand-held camera: it moves a little, its sensor is noisy, the light changes
            dx, dy = rng.integers(-4, 5, 2)
            moved = cv2.warpAffine(canvas, np.float32([[1, 0, dx], [0, 1, dy]]), SIZE, borderValue=(114, 114, 114))
            frame = moved.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.normal(0, 6, moved.shape)
            encoder.write(np.clip(frame, 0, 255).astype(np.uint8))
            truth.append(test.annotations[test.names[i]].verb)
    encoder.close()
    return truth


def stream_answers(bundle: Path, clip: Path) -> list:
    """Each frame's answer, streamed with smoothing off."""
    answers: list = []
    with Predictor(bundle) as predictor:
        streams = StreamSet(predictor, on_result=lambda _, frame, answer: answers.append(answer),
                            smoothing=SmoothingConfig(smooth="off"))
        streams.add("clip", open_source(clip))
        streams.run()
    return answers


def score(verbs: list[str], truth: list[str], frames: int) -> dict[str, Any]:
    """Changes per 100 frames, top-1, and the delay of each true change (None where the answer
    never became the new verb within its segment)."""
    changes = sum(a != b for a, b in zip(verbs, verbs[1:]))
    delays: list[int | None] = []
    for start in range(frames, len(truth), frames):
        hit = next((f - start for f in range(start, start + frames) if verbs[f] == truth[start]), None)
        delays.append(hit)
    return {"changes_per_100": 100 * changes / len(verbs),
            "top1": 100 * float(np.mean([a == b for a, b in zip(verbs, truth)])),
            "delays": delays}


def timeline(truth: list[str], runs: dict[str, list[str]], path: Path) -> None:
    """One clip: a strip per row (truth, then each method), a colour per verb, white where wrong."""
    names = sorted(set(truth) | {v for verbs in runs.values() for v in verbs})
    rng = np.random.default_rng(1)
    colours = {v: tuple(int(c) for c in rng.integers(40, 220, 3)) for v in names}
    scale, row, pad = 4, 34, 150
    width = pad + scale * len(truth) + 10
    rows = {"truth": truth, **runs}
    canvas = np.full((row * len(rows) + 20, width, 3), 255, np.uint8)
    for r, (label, verbs) in enumerate(rows.items()):
        y = 10 + r * row
        cv2.putText(canvas, label, (5, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for f, verb in enumerate(verbs):
            colour = colours[verb] if label == "truth" or verb == truth[f] else (235, 235, 235)
            cv2.rectangle(canvas, (pad + f * scale, y + 4), (pad + (f + 1) * scale - 1, y + row - 8), colour, -1)
            if label != "truth" and f and verb != verbs[f - 1]:
                cv2.line(canvas, (pad + f * scale, y), (pad + f * scale, y + row - 4), (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)


def clip_run(description: str, workdir: str, segments: int, frames: int, out: str,
             more: Callable[[argparse.ArgumentParser], None] = lambda parser: None
             ) -> tuple[argparse.Namespace, Path, datetime.datetime, list[int]]:
    """The command line of a benchmark on clips (this one, ``hoi_tracks.py``; ``more`` adds its
    own arguments), parsed: the arguments, the results file (its folder made), the start time
    and the seeds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--segments", type=int, default=segments)
    parser.add_argument("--frames", type=int, default=frames,
                        help=f"frames per segment ({frames // FPS} s at {FPS} fps)")
    parser.add_argument("--out", default=out)
    more(parser)
    args = parser.parse_args()
    setup_logging()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return args, path, datetime.datetime.now(datetime.timezone.utc), [int(s) for s in args.seeds.split(",")]


def provenance(script: str, date: datetime.datetime) -> dict[str, Any]:
    """How a benchmark's results were made: its command line, start, machine and libraries."""
    return {"command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
            "date": date.isoformat(timespec="seconds"), "machine": device_info(), "versions": library_versions()}


def main() -> None:
    args, out, date, seeds = clip_run(__doc__, "runs/int8-recipe", 12, 45,
                                      "runs/stream-smoothing/stream_smoothing.json")
    per_seed: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        work = Path(args.workdir) / f"seed{seed}"
        clip = out.parent / f"clip-seed{seed}.mp4"
        truth = write_clip(work / "data", clip, args.segments, args.frames, seed)
        answers = stream_answers(work / "bundle-int8", clip)
        runs = {}
        for name, cfg in METHODS.items():
            smoother = VerbSmoother(cfg)
            runs[name] = [smoother(a).verb for a in answers]
        scores = {name: score(verbs, truth, args.frames) for name, verbs in runs.items()}
        for r in scores.values():  # frames later than each frame's own answer first showed the new verb
            r["extra_delays"] = [d - raw for d, raw in zip(r["delays"], scores["as answered"]["delays"])
                                 if d is not None and raw is not None]
        per_seed[str(seed)] = scores
        if seed == seeds[0]:
            timeline(truth, {k: runs[k] for k in ("as answered", "ema 0.3", "vote 5 (default)")},
                     out.parent / "stream_smoothing.png")
    summary = {}
    for name in METHODS:
        rows = [per_seed[s][name] for s in per_seed]
        delays = [d for r in rows for d in r["delays"] if d is not None]
        summary[name] = {"changes_per_100": float(np.mean([r["changes_per_100"] for r in rows])),
                         "top1": float(np.mean([r["top1"] for r in rows])),
                         "mean_delay": float(np.mean(delays)) if delays else None,
                         "max_delay": max(delays) if delays else None,
                         "max_extra_delay": max((d for r in rows for d in r["extra_delays"]), default=None)}
    results = {"provenance": provenance("stream_smoothing.py", date),
               "setup": {"segments": args.segments, "frames_per_segment": args.frames, "fps": FPS, "seeds": seeds,
                         "methods": {k: vars(v) for k, v in METHODS.items()}},
               "per_seed": per_seed, "summary": summary}
    write_json(out, results)
    table = [["method", "seed", "changes / 100 frames", "top-1 %", "mean delay", "max delay", "max extra delay"]]
    for name in METHODS:
        for s in per_seed:
            r = per_seed[s][name]
            d = [x for x in r["delays"] if x is not None]
            table.append([name, s, f"{r['changes_per_100']:.1f}", f"{r['top1']:.1f}",
                          f"{np.mean(d):.1f}" if d else "-", str(max(d)) if d else "-",
                          str(max(r["extra_delays"], default="-"))])
        m = summary[name]
        table.append([name, "mean", f"{m['changes_per_100']:.1f}", f"{m['top1']:.1f}",
                      f"{m['mean_delay']:.1f}" if m["mean_delay"] is not None else "-", str(m["max_delay"]),
                      str(m["max_extra_delay"])])
    print(render_table(table, left=2))
    print(f"\n{out}, {out.parent / 'stream_smoothing.png'}")


if __name__ == "__main__":
    main()
