"""Does bf16 autocast train students as well as FP32? MIPD students at several SynthSitu data
draws, each trained twice (FP32, and ``cpu_autocast: bf16``) on the same data, teacher and
rationales, then evaluated on test. (What it gains in speed: ``benchmarks/training_speed.py
--parts autocast``.)

    python benchmarks/bf16_training.py [--seeds 0,1,2] [--workdir runs/int8-recipe] [--out FILE]

The work folders are ``benchmarks/int8_recipe.py``'s (``WORKDIR/seedN``, the quickstart's
settings at generator and training seed N): their FP32 MIPD students are reused, the bf16 ones
are trained beside them (``student-mipd-bf16``). The verdict per metric: the bf16 students'
mean is no lower than the lowest FP32 seed (it stays within FP32's seed spread, or above it).
Needs a CPU with AVX512_BF16 or AMX-BF16.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.files import write_json
from mipd_edge.machine import bf16_capable, device_info, library_versions
from mipd_edge.pipeline import PRESETS, Pipeline
from mipd_edge.tables import render_table

METRICS = {"seen verb": ("seen", "verb"), "rare verb": ("rare", "verb"), "unseen verb": ("unseen", "verb"),
           "all grnd_value": ("all", "grnd_value")}


def train_pair(workdir: Path, seed: int) -> dict[str, Any]:
    """The FP32 and bf16 MIPD students of one data draw and their test top-1."""
    pipe = Pipeline(workdir, replace(PRESETS["default"], seed=seed, methods=("mipd",), cpu_autocast="off"))
    pipe.compare_methods()
    out = {}
    for name, overrides in (("fp32", {}), ("bf16", {"cpu_autocast": "bf16"})):  # the pipeline's own is off
        student = f"student-mipd{'' if name == 'fp32' else '-bf16'}"
        model = pipe.make_student("mipd", overrides=overrides, name=student)
        metrics = pipe.evaluate_model(model, student)
        out[name] = {label: metrics[split]["top1"][key] for label, (split, key) in METRICS.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="runs/int8-recipe")
    parser.add_argument("--out", default=None, help="the results JSON (default: WORKDIR/bf16-training.json)")
    args = parser.parse_args()
    setup_logging()
    if not bf16_capable():
        raise SystemExit("bf16_training: this CPU has neither AVX512_BF16 nor AMX-BF16")
    date = datetime.datetime.now(datetime.timezone.utc)
    seeds = {s: train_pair(Path(args.workdir) / f"seed{s}", int(s)) for s in args.seeds.split(",")}
    verdict = {}
    for label in METRICS:
        fp32 = [r["fp32"][label] for r in seeds.values()]
        bf16 = float(np.mean([r["bf16"][label] for r in seeds.values()]))
        verdict[label] = {"fp32_mean": float(np.mean(fp32)), "fp32_range": [min(fp32), max(fp32)], "bf16_mean": bf16,
                          "within_seed_spread": min(fp32) <= bf16 <= max(fp32), "not_below": bf16 >= min(fp32)}
    results = {"provenance": {"command": "python benchmarks/bf16_training.py --seeds " + args.seeds,
                              "date": date.isoformat(timespec="seconds"), "machine": device_info(),
                              "versions": library_versions()},
               "setup": {"student": "MIPD, the quickstart's settings (8 epochs, 2,400 images, 128 px)",
                         "seed": "SynthSitu generator seed (data, teacher sample, rationales) and training seed",
                         "bf16": "TrainConfig(cpu_autocast='bf16'): torch.autocast on the CPU, bfloat16"},
               "seeds": seeds, "verdict": verdict,
               "bf16_not_below_fp32_seed_spread": all(v["not_below"] for v in verdict.values())}
    out = Path(args.out or Path(args.workdir) / "bf16-training.json")
    write_json(out, results)
    rows = [["seed", "training", *METRICS]]
    for seed, r in seeds.items():
        for name in ("fp32", "bf16"):
            rows.append([seed, name, *(f"{r[name][label]:.1f}" for label in METRICS)])
    print(render_table(rows, left=2))
    print("bf16 mean against the FP32 seeds' range: " + ", ".join(
        f"{k} {'within' if v['within_seed_spread'] else 'above' if v['not_below'] else 'BELOW'}"
        for k, v in verdict.items()))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
