"""The distilled edge student against the authors' student, on this machine.

    python benchmarks/authors_student.py [--workdir runs/quickstart] [--batch 1,8] [--seconds 2]
        [--models authors,clip]

The authors' released model (GitHub caicch/Ov-GSR) runs its student on frozen CLIP
ViT-L/14-336 image tokens (577 x 1024) with a linear projection and one decoder layer. At
deployment the CLIP tower runs on every image, so the comparison model is the tower plus
that student (``create_student("authors")``), with random weights: a latency-only row, no
accuracy claimed. It gets PyTorch FP32, OpenVINO FP32 and OpenVINO INT8 (NNCF, 16
calibration images) rows beside the quickstart's student bundles and its ``reference``
row, all timed in the same interleaved rounds. ``clip`` adds the same architecture on a
transformers CLIP ViT-B/16 image tower (``--student clip``, random weights saved locally):
what a user of the CLIP student would deploy, also latency only. Needs a finished
``mipd-edge quickstart`` work directory; writes ``benchmark-MODELS/`` there (e.g.
``benchmark-authors-clip/``; the authors' bundle takes about 3 GB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mipd_edge.benchmark import BenchmarkSettings, run_benchmark
from mipd_edge.benchmark_report import format_results
from mipd_edge.cli import setup_logging
from mipd_edge.errors import MipdEdgeError
from mipd_edge.pipeline import PRESETS, Pipeline
from mipd_lab.comparison import make_comparison_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--models", default="authors,clip", help="comparison models: authors, clip")
    args = parser.parse_args()
    setup_logging()

    workdir = Path(args.workdir)
    bundles = [workdir / name for name in ("bundle-fp32", "bundle-int8")]
    missing = [b for b in bundles if not (b / "bundle.json").is_file()]
    if missing:
        raise SystemExit(
            f"authors_student: {missing[0]} not found: run `mipd-edge quickstart --workdir {workdir}` first"
        )
    pipe = Pipeline(workdir, PRESETS["default"])
    try:
        reference = make_comparison_bundle(pipe, "reference")
        compared = [make_comparison_bundle(pipe, name, formats=("openvino",), int8=True)
                    for name in args.models.split(",")]
    except MipdEdgeError as exc:
        raise SystemExit(f"authors_student: {exc}") from exc
    settings = BenchmarkSettings(backends=("torch", "onnxruntime", "openvino"), precisions=("fp32", "int8"),
                                 batches=tuple(int(b) for b in args.batch.split(",")), device=args.device,
                                 data=str(pipe.data), seconds=args.seconds)
    out = workdir / f"benchmark-{args.models.replace(',', '-')}"
    results = run_benchmark(bundles, settings, out,
                            [reference, *compared])
    print(format_results(results))
    for model, versus in results["summary"].get("versus", {}).items():
        print(f"{model}: {versus['their_row']} {versus['their_p50_ms']:.1f} ms against the distilled "
              f"{versus['student']} {versus['student_p50_ms']:.2f} ms at batch 1: {versus['speedup']:.0f}x")
    print(f"written: {out}/results.json")


if __name__ == "__main__":
    main()
