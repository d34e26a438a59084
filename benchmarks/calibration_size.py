"""How many calibration images INT8 needs: post-training quantization of the quickstart's MIPD
student with 8 to 1,000 calibration images, each bundle's OpenVINO INT8 against FP32 on test.

    python benchmarks/calibration_size.py [--seeds 0,1,2] [--sizes 8,32,128,300,1000]
                                          [--workdir runs/int8-recipe] [--out FILE]

Uses ``benchmarks/int8_recipe.py``'s work folders (``WORKDIR/seedN``: each seed a SynthSitu
data draw with its own student and FP32 bundle). Per seed and size: ``mipd-edge quantize
--method ptq --formats openvino --calib-size N`` (the first N images of one fixed draw of the
training split, so a larger set holds the smaller ones), its mean glance cosine against FP32
torch, and test verb top-1 and grounded value (all verbs) of INT8 minus FP32 through the
Predictor. Writes a JSON and a plot, and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mipd_edge.cli import setup_logging
from mipd_edge.config import QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.data.split import dataset_split
from mipd_edge.deploy.predictor import Predictor
from mipd_edge.evaluation import evaluate_predictor
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.pipeline import PRESETS, Pipeline, stage
from mipd_edge.quantize import quantize_bundle
from mipd_edge.tables import render_table

KEYS = ("verb", "grnd_value")


def openvino_top1(bundle: Path, data: Path, precision: str) -> dict[str, float]:
    with Predictor(bundle, backend="openvino", precision=precision) as predictor:
        metrics = evaluate_predictor(predictor, data, "test", splits=dataset_split(data))
    return {k: metrics["all"]["top1"][k] for k in KEYS}


def measure_seed(workdir: Path, seed: int, sizes: list[int]) -> dict[str, Any]:
    pipe = Pipeline(workdir, replace(PRESETS["default"], seed=seed, methods=("mipd",), cpu_autocast="off"))
    pipe.compare_methods()
    fp32_bundle, _ = pipe.make_bundles("mipd")
    source = {"student": pipe.stage_params("student-mipd")}
    fp32 = stage(workdir, "calibration-fp32", source, lambda: openvino_top1(fp32_bundle, pipe.data, "fp32"))
    out: dict[str, Any] = {"fp32": fp32, "sizes": {}}
    for size in sizes:
        bundle = workdir / f"bundle-int8-calib{size}"

        def run(size: int = size, bundle: Path = bundle) -> dict[str, Any]:
            manifest = quantize_bundle(workdir / "student-mipd", pipe.data, bundle, QuantizeConfig(
                method="ptq", calib_size=size, formats=("openvino",), from_bundle=str(fp32_bundle), evaluate=False),
                RunContext(progress=False, overwrite=True))
            int8 = openvino_top1(bundle, pipe.data, "int8")
            return {"glance_cosine_mean": manifest.verification["openvino-int8"]["glance_cosine_mean"],
                    "int8": int8, "int8_minus_fp32": {k: int8[k] - fp32[k] for k in KEYS}}
        out["sizes"][str(size)] = stage(workdir, f"calibration-{size}", {**source, "size": size}, run)
    return out


def plot(seeds: dict[str, Any], sizes: list[int], path: Path) -> None:
    """INT8 - FP32 test verb top-1 against the calibration size (log scale), a line per seed."""
    w, h, pad = 900, 520, 70
    lo = min(-3.0, *(r["sizes"][str(s)]["int8_minus_fp32"]["verb"] for r in seeds.values() for s in sizes))
    hi = max(1.0, *(r["sizes"][str(s)]["int8_minus_fp32"]["verb"] for r in seeds.values() for s in sizes))
    canvas = np.full((h, w, 3), 255, np.uint8)
    logs = np.log10(sizes)

    def xy(size: int, value: float) -> tuple[int, int]:
        x = pad + (np.log10(size) - logs.min()) / max(np.ptp(logs), 1e-9) * (w - 2 * pad)
        return int(x), int(h - pad - (value - lo) / (hi - lo) * (h - 2 * pad))

    for value in (0.0, -1.0):
        cv2.line(canvas, xy(sizes[0], value), xy(sizes[-1], value), (170, 170, 170) if value else (0, 0, 0), 1)
    cv2.putText(canvas, "-1 point", (xy(sizes[-1], -1.0)[0] - 80, xy(sizes[-1], -1.0)[1] - 6),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (120, 120, 120), 1, cv2.LINE_AA)
    colours = [(200, 80, 20), (30, 140, 30), (20, 60, 200), (140, 40, 140)]
    for i, (seed, r) in enumerate(seeds.items()):
        points = [xy(s, r["sizes"][str(s)]["int8_minus_fp32"]["verb"]) for s in sizes]
        for a, b in zip(points, points[1:]):
            cv2.line(canvas, a, b, colours[i % 4], 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(canvas, p, 4, colours[i % 4], -1, cv2.LINE_AA)
        cv2.putText(canvas, f"seed {seed}", (w - pad - 60, pad + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    colours[i % 4], 1, cv2.LINE_AA)
    for s in sizes:
        x, _ = xy(s, lo)
        cv2.putText(canvas, str(s), (x - 12, h - pad + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "calibration images", (w // 2 - 70, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(canvas, "INT8 - FP32, test verb top-1 (points), OpenVINO", (pad, 30), cv2.FONT_HERSHEY_SIMPLEX,
                0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for value in np.arange(np.ceil(lo), np.floor(hi) + 1):
        cv2.putText(canvas, f"{value:+.0f}", (10, xy(sizes[0], value)[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sizes", default="8,32,128,300,1000")
    parser.add_argument("--workdir", default="runs/int8-recipe")
    parser.add_argument("--out", default=None, help="the results JSON (default: WORKDIR/calibration-size.json)")
    args = parser.parse_args()
    setup_logging()
    date = datetime.datetime.now(datetime.timezone.utc)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    seeds = {s: measure_seed(Path(args.workdir) / f"seed{s}", int(s), sizes) for s in args.seeds.split(",")}
    summary = {}
    for size in sizes:
        drops = [-r["sizes"][str(size)]["int8_minus_fp32"][k] for r in seeds.values() for k in KEYS]
        summary[str(size)] = {"worst_loss": max(drops), "mean_verb_delta": float(np.mean(
            [r["sizes"][str(size)]["int8_minus_fp32"]["verb"] for r in seeds.values()]))}
    out = Path(args.out or Path(args.workdir) / "calibration-size.json")
    write_json(out, {"provenance": {"command": f"python benchmarks/calibration_size.py --seeds {args.seeds} --sizes "
                                               f"{args.sizes}", "date": date.isoformat(timespec="seconds"),
                                    "machine": device_info(), "versions": library_versions()},
                     "setup": {"student": "the quickstart's MIPD student per seed (SynthSitu data draw)",
                               "quantize": "NNCF PTQ of the OpenVINO encoder, the first N of one draw of the "
                                           "training split",
                               "test": "test split, all verbs, top-1, OpenVINO through the Predictor"},
                     "sizes": sizes, "seeds": seeds, "summary": summary})
    plot(seeds, sizes, out.with_suffix(".png"))
    rows = [["images", *(f"seed {s} verb / grnd" for s in seeds), "worst loss"]]
    for size in sizes:
        deltas = [r["sizes"][str(size)]["int8_minus_fp32"] for r in seeds.values()]
        rows.append([str(size), *(f"{d['verb']:+.2f} / {d['grnd_value']:+.2f}" for d in deltas),
                     f"{summary[str(size)]['worst_loss']:.2f}"])
    print(render_table(rows))
    print(f"\n{out}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
