"""Ablation: the same SynthSitu data and seed, students trained with none, kd and mipd.

    python benchmarks/ablation.py [--quick] [--out DIR] [--student-epochs N] [--teacher-epochs N]

Writes ``ablation.json`` = {"none": M, "kd": M, "mipd": M, "teacher": M} (each M the test
metrics with seen / rare / unseen sections) and prints a table. The work directory keeps
every stage, so a rerun reuses what is done. The default takes about 45 minutes on 2 cores
(teacher 8 epochs, students 24 epochs). --quick is a small run (about 5 minutes);
its numbers show the pipeline works, not what the method gains.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mipd_edge.cli import setup_logging
from mipd_edge.metrics import format_comparison
from mipd_edge.pipeline import PRESETS, Pipeline

TARGETS = {"unseen": 15.0, "rare": 5.0, "seen": -2.0}  # mipd minus none, verb top-1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--student-epochs", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=None)
    args = parser.parse_args()
    setup_logging()

    cfg = replace(PRESETS["quick" if args.quick else "ablation"], seed=args.seed, methods=("none", "kd", "mipd"))
    if args.student_epochs:
        cfg = replace(cfg, student_epochs=args.student_epochs)
    if args.teacher_epochs:
        cfg = replace(cfg, teacher_epochs=args.teacher_epochs)
    out = Path(args.out) / ("quick" if args.quick else "default")
    results = Pipeline(out, cfg).run_ablation()
    (out / "ablation.json").write_text(json.dumps(results, indent=1))

    print(f"\nAblation on SynthSitu test ({cfg.train} training images before the split, seed {cfg.seed})")
    print(format_comparison(results))
    gains = {s: results["mipd"][s]["top1"]["verb"] - results["none"][s]["top1"]["verb"] for s in TARGETS}
    print("\nmipd - none, verb top-1: " + ", ".join(
        f"{s} {g:+.1f} (target {'>=' if TARGETS[s] > 0 else '>'} {TARGETS[s]:+.0f})" for s, g in gains.items()))
    print(f"written: {out / 'ablation.json'}")


if __name__ == "__main__":
    main()
