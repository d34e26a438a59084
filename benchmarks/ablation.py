"""Ablations on SynthSitu: the same data and honest teacher for every student.

    python benchmarks/ablation.py [--quick] [--out DIR] [--student-epochs N] [--teacher-epochs N]
    python benchmarks/ablation.py --components [--rows ROW ...] [--seeds 0 1 2] [--results FILE]

Default: students trained with none, kd and mipd at one seed; writes ``DIR/default/ablation.json``
= {"none": M, "kd": M, "mipd": M, "teacher": M} and prints a table (about 45 minutes on 2 cores:
teacher 8 epochs, students 48 epochs). --quick is a small run (about 5 minutes); its numbers
show the pipeline works, not what the method gains.

--components: MIPD's component ablation (mipd_lab/components.py): every row at every seed, the
goal rows (none, kd, mipd, authors) first, into ``--results`` (by default
``benchmarks/results/ablation-components-<student epochs>-epochs.json``). The results JSON and
its plot (same name, .png) are rewritten after every run, so a partial ablation is readable; a
rerun reuses every finished run and resumes an interrupted one from its last checkpoint. On 2
cores a student takes about 11 minutes (48 epochs), the whole ablation (17 student rows and the
teacher, 3 seeds) about 10 hours: run it in several sittings.
"""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import replace
from pathlib import Path

from stream_smoothing import provenance

from mipd_edge.cli import setup_logging
from mipd_edge.metrics import format_comparison
from mipd_edge.pipeline import PRESETS, Pipeline
from mipd_lab.components import ABLATION, ROWS, format_components, format_seeds, run_components

TARGETS = {"unseen": 15.0, "rare": 5.0, "seen": -2.0}  # mipd minus none, verb top-1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--seed", type=int, default=0, help="data and teacher seed")
    parser.add_argument("--student-epochs", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--components", action="store_true", help="the component ablation over seeds")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="students' training seeds")
    parser.add_argument("--results", help="results JSON (default: named by the students' epochs, benchmarks/results)")
    args = parser.parse_args()
    setup_logging()

    cfg = replace(PRESETS["quick"] if args.quick else ABLATION, seed=args.seed, methods=("none", "kd", "mipd"))
    if args.student_epochs:
        cfg = replace(cfg, student_epochs=args.student_epochs)
    if args.teacher_epochs:
        cfg = replace(cfg, teacher_epochs=args.teacher_epochs)
    out = Path(args.out) / ("quick" if args.quick else "default")
    if args.components:
        results = Path(args.results or f"benchmarks/results/ablation-components-{cfg.student_epochs}-epochs.json")
        made = provenance("ablation.py", datetime.datetime.now(datetime.timezone.utc))
        summary = run_components(Pipeline(out, cfg), args.rows, args.seeds, results, results.with_suffix(".png"), made)
        print(f"\nComponent ablation on SynthSitu test (mean [min, max] over seeds {args.seeds})")
        print(format_components(summary))
        print("\nEvery seed (gold verb: roles scored with the image's true verb)")
        print(format_seeds(summary))
        print(json.dumps(summary["goals"], indent=1))
        print(f"written: {results} and {results.with_suffix('.png')}")
        return
    results = Pipeline(out, cfg).compare_methods()
    (out / "ablation.json").write_text(json.dumps(results, indent=1))

    print(f"\nAblation on SynthSitu test ({cfg.train} training images before the split, seed {cfg.seed})")
    print(format_comparison(results))
    gains = {s: results["mipd"][s]["top1"]["verb"] - results["none"][s]["top1"]["verb"] for s in TARGETS}
    print("\nmipd - none, verb top-1: " + ", ".join(
        f"{s} {g:+.1f} (target {'>=' if TARGETS[s] > 0 else '>'} {TARGETS[s]:+.0f})" for s, g in gains.items()))
    print(f"written: {out / 'ablation.json'}")


if __name__ == "__main__":
    main()
