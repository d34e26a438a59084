"""How fast SynthSitu is written: 10,000 images by default, one process and all cores.

    python benchmarks/synthsitu_generation.py [--images 10000] [--image-size 192] [--out DIR]

Prints a table and writes ``synthsitu_generation.json`` with images/s and the speed-up
of all cores over one process, measured side by side in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from mipd_edge.data.synthsitu import generate
from mipd_edge.data.synthsitu.generate import SynthConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    train, dev = int(args.images * 0.8), int(args.images * 0.1)
    test = args.images - train - dev
    rows = []
    for workers in sorted({1, cores}):
        scratch = Path(tempfile.mkdtemp(prefix="synthsitu-bench-"))
        try:
            start = time.perf_counter()
            generate(scratch,
                     SynthConfig(seed=0, train=train, dev=dev, test=test, image_size=args.image_size, workers=workers))
            seconds = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file()) / 2**20
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rows.append({"workers": workers, "images": args.images, "seconds": round(seconds, 2),
                     "images_per_s": round(args.images / seconds, 1), "disk_mb": round(size_mb, 1)})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_1_worker"] = round(base / row["seconds"], 2)

    print(
        f"\nSynthSitu generation, {args.images} images of {args.image_size} px, "
        f"{platform.processor() or platform.machine()}, {cores} cores"
    )
    print(f"{'workers':>8} {'seconds':>9} {'images/s':>9} {'disk MB':>8} {'speed-up':>9}")
    for r in rows:
        print(f"{r['workers']:>8} {r['seconds']:>9.1f} {r['images_per_s']:>9.1f} {r['disk_mb']:>8.1f} "
              f"{r['speedup_vs_1_worker']:>8.2f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "synthsitu_generation", "cpu_cores": cores, "platform": platform.platform(),
              "image_size": args.image_size, "rows": rows}
    (out / "synthsitu_generation.json").write_text(json.dumps(result, indent=1))
    print(f"written: {out / 'synthsitu_generation.json'}")


if __name__ == "__main__":
    main()
