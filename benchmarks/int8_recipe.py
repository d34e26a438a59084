"""Does the default INT8 recipe hold? The quickstart's MIPD student on several SynthSitu data
draws, quantized by ``mipd-edge quantize``'s default recipe, then measured on test.

    python benchmarks/int8_recipe.py [--seeds 0,1,2] [--workdir runs/int8-recipe] [--out FILE]

Each seed is a data draw (SynthSitu's generator seed: the world's images, the teacher's own
sample and the rationales are rebuilt with it) and the training seed, with the quickstart's
settings otherwise: data, teacher, rationales and MIPD student in ``WORKDIR/seedN``, as
resumable stages (``mipd_edge.pipeline``). Per seed it records which recipe the default chose
and why, the dev gate's verdict and interval, and test verb top-1 and grounded value (all
verbs) in FP32 and INT8 on OpenVINO and on ONNX Runtime (each running its default INT8
graph), and whether the gate's verdict agreed with test (INT8 within the gate's points of
FP32 on the gate's backend). Writes a JSON and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mipd_edge.cli import setup_logging
from mipd_edge.data.split import dataset_split
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.predictor import Predictor
from mipd_edge.deploy.runtimes.selection import DEFAULT_MAX_DROP, accuracy_gate
from mipd_edge.evaluation import evaluate_predictor
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.pipeline import PRESETS, Pipeline, stage
from mipd_edge.tables import render_table

KEYS = ("verb", "grnd_value")
BACKENDS = ("openvino", "onnxruntime")


def measure_seed(workdir: Path, seed: int) -> dict[str, Any]:
    """One data draw: the student, its INT8 bundle by the default recipe, and test in both precisions."""
    pipe = Pipeline(workdir, replace(PRESETS["default"], seed=seed, methods=("mipd",), cpu_autocast="off"))
    pipe.compare_methods()
    _, int8 = pipe.make_bundles("mipd")
    manifest = read_manifest(int8)

    def test() -> dict[str, Any]:
        splits = dataset_split(pipe.data)
        out: dict[str, Any] = {}
        for backend in BACKENDS:
            for precision in ("fp32", "int8"):
                with Predictor(int8, backend=backend, precision=precision) as predictor:
                    metrics = evaluate_predictor(predictor, pipe.data, "test", splits=splits)
                out[f"{backend} {precision}"] = {k: metrics["all"]["top1"][k] for k in KEYS}
            out[f"{backend} int8 - fp32"] = {k: out[f"{backend} int8"][k] - out[f"{backend} fp32"][k] for k in KEYS}
        return out

    measured = stage(workdir, "int8-test", {"bundle": pipe.stage_params("bundle-int8")}, test)
    gate_backend = manifest.metrics["backend"]
    test_loss = max(-measured[f"{gate_backend} int8 - fp32"][k] for k in KEYS)
    verdict = accuracy_gate(manifest, "int8")
    return {"recipe": manifest.quantization["recipe"], "gate": {
        "backend": gate_backend, "images": manifest.metrics["gate"]["images"],
        "int8_minus_fp32": manifest.metrics["int8_minus_fp32_top1"],
        "ci95": manifest.metrics["gate"].get("ci95", {}).get("int8"), "passes": verdict is None, "why": verdict},
        "test": measured, "test_within_gate": test_loss <= DEFAULT_MAX_DROP,
        "gate_agrees_with_test": (verdict is None) == (test_loss <= DEFAULT_MAX_DROP)}


def table(seeds: dict[str, dict]) -> str:
    rows = []
    for seed, r in seeds.items():
        dev = r["gate"]["int8_minus_fp32"]
        test = r["test"]
        rows.append([seed, r["recipe"]["method"], f"{dev['verb']:+.2f} / {dev['grnd_value']:+.2f}",
                     "pass" if r["gate"]["passes"] else "fail",
                     *(f"{test[f'{b} int8 - fp32']['verb']:+.2f} / {test[f'{b} int8 - fp32']['grnd_value']:+.2f}"
                       for b in BACKENDS),
                     "yes" if r["gate_agrees_with_test"] else "no"])
    header = ["seed", "recipe", "dev INT8-FP32 verb / grnd", "gate", "test OpenVINO", "test ONNX Runtime",
              "gate agrees"]
    return render_table([header, *rows], left=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="runs/int8-recipe")
    parser.add_argument("--out", default=None, help="the results JSON (default: WORKDIR/int8-recipe.json)")
    args = parser.parse_args()
    setup_logging()
    started, date = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    seeds = {s: measure_seed(Path(args.workdir) / f"seed{s}", int(s)) for s in args.seeds.split(",")}
    results = {"provenance": {"command": "python benchmarks/int8_recipe.py --seeds " + args.seeds,
                              "date": date.isoformat(timespec="seconds"), "machine": device_info(),
                              "versions": library_versions(), "seconds": round(time.perf_counter() - started, 1)},
               "setup": {"student": "the quickstart's MIPD student (mipd-edge quickstart's settings), one per seed",
                         "seed": "SynthSitu generator seed (data, teacher sample, rationales) and training seed",
                         "quantize": "mipd-edge quantize defaults: PTQ, QAT where PTQ loses more than the gate",
                         "gate": f"{DEFAULT_MAX_DROP:g} point of dev top-1 verb and grounded value, training verbs",
                         "test": "test split, all verbs, top-1 verb and grounded value"},
               "seeds": seeds,
               "summary": {"seeds": len(seeds),
                           "recipes": {s: r["recipe"]["method"] for s, r in seeds.items()},
                           "test_within_gate": sum(r["test_within_gate"] for r in seeds.values()),
                           "gate_agrees_with_test": sum(r["gate_agrees_with_test"] for r in seeds.values())}}
    out = Path(args.out or Path(args.workdir) / "int8-recipe.json")
    write_json(out, results)
    print(table(seeds))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
