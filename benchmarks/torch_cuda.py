"""The PyTorch CUDA path of a bundle: eager FP32, eager FP16, and FP16 compiled with CUDA graphs.

    python benchmarks/torch_cuda.py --model BUNDLE [--batch 1,64] [--seconds 3] [--out results.json]

Times the torch runtime's raw inference (encoder + decoder, numpy in and out, so the
host-device copies a real Predictor pays are included) at each batch, side by side in one
run, with ratios against eager FP32 of the same run, and checks that the FP16 paths agree
with FP32 (cosine of the glance embedding). It needs only torch, numpy and safetensors, so
it runs on GPU images without OpenCV; ``mipd-edge benchmark --device CUDA`` gives the full
table (Predictor time, accuracy) where the SDK's whole dependency set is installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from mipd_edge.benchmark import percentiles
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.runtimes import load_runtime
from mipd_edge.machine import device_info, library_versions
from mipd_edge.tables import render_table

log = logging.getLogger("torch_cuda")
PATHS = {"eager fp32": ("fp32", False), "eager fp16": ("fp16", False), "compiled fp16 + CUDA graphs": ("fp16", True)}


def time_runtime(runtime, inputs: dict, seconds: float, warmup: int = 20) -> list[float]:
    def once() -> None:
        memory = runtime.run("encoder", inputs["encoder"])["memory"]
        runtime.run("decoder", {**inputs["decoder"], "memory": memory})

    for _ in range(warmup):  # also triggers compilation and CUDA graph capture
        once()
    samples, end = [], time.perf_counter() + seconds
    while len(samples) < 50 or time.perf_counter() < end:
        t = time.perf_counter()
        once()
        samples.append((time.perf_counter() - t) * 1e3)
    return samples


def glance_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bundle (its weights.safetensors is what runs)")
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default="torch_cuda.json")
    parser.add_argument("--device", default="CUDA", help="CPU runs the eager FP32 path only (a dry run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    manifest = read_manifest(args.model)
    rng = np.random.default_rng(0)
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        paths = PATHS if args.device.upper().startswith("CUDA") else {"eager fp32": PATHS["eager fp32"]}
        runtimes = {name: load_runtime("torch", Path(args.model), manifest, device=args.device, precision=precision,
                                       compiled=compiled) for name, (precision, compiled) in paths.items()}
        reference = runtimes["eager fp32"]
        inputs = reference.example_inputs(batch)
        inputs["encoder"]["images"] = rng.standard_normal(inputs["encoder"]["images"].shape).astype(np.float32)
        expected = reference.run("encoder", inputs["encoder"])["glance"]
        for name, runtime in runtimes.items():
            start = time.perf_counter()
            samples = time_runtime(runtime, inputs, args.seconds)
            lat = percentiles(samples)
            rows.append({"path": name, "batch": batch, "latency_ms": lat, "throughput_fps": batch * 1e3 / lat["mean"],
                         "glance_cosine_min_vs_fp32": glance_cosine(runtime.run("encoder", inputs["encoder"])["glance"],
                                                                     expected),
                         "first_call_and_timing_s": time.perf_counter() - start})
            log.info("batch %d %s: p50 %.3f ms", batch, name, lat["p50"])
    for row in rows:
        base = next(r for r in rows if r["batch"] == row["batch"] and r["path"] == "eager fp32")
        row["speedup_vs_eager_fp32"] = base["latency_ms"]["p50"] / row["latency_ms"]["p50"]
    results = {"device": device_info(), "versions": library_versions(), "bundle": args.model, "rows": rows}
    Path(args.out).write_text(json.dumps(results, indent=1))
    table = [["path", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "speedup", "cosine vs fp32"]]
    table += [[r["path"], str(r["batch"]), f"{r['latency_ms']['p50']:.3f}", f"{r['latency_ms']['p90']:.3f}",
               f"{r['latency_ms']['p99']:.3f}", f"{r['throughput_fps']:.0f}", f"{r['speedup_vs_eager_fp32']:.2f}x",
               f"{r['glance_cosine_min_vs_fp32']:.4f}"] for r in rows]
    print(render_table(table))
    print(f"device: {results['device'].get('gpu')}; written: {args.out}")


if __name__ == "__main__":
    main()
