"""``mipd-edge quickstart``: everything the SDK can do, end to end, on SynthSitu.

Data, the open-vocabulary split, the frequency-prior reference, the teacher, JRG
rationales, a student without distillation and one distilled with MIPD (each evaluated on
the test split), the FP32 and INT8 bundles, the benchmark of every installed backend with
accuracy, annotated frames, a demo video through the INT8 bundle, and ``report.md``.
Every stage is resumable (see ``mipd_edge.pipeline``).
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

from .files import write_json
from .machine import device_info, library_versions
from .metrics import format_comparison
from .pipeline import PRESETS, Pipeline, stage

log = logging.getLogger(__name__)


def run(workdir: Path, fast: bool = False, seed: int = 0, preset: Optional[str] = None,
        command: str = "mipd-edge quickstart") -> dict:
    """The whole run; ``command`` is how it was started, recorded in ``quickstart.json`` beside the
    machine, the library versions, the date and the time it took, so its figures carry their provenance."""
    started, start_date = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    cfg = replace(PRESETS[preset or ("fast" if fast else "default")], seed=seed)
    pipe = Pipeline(workdir, cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    pipe.make_data()
    results = {"prior": stage(workdir, "eval-prior", pipe.data_params(), lambda: evaluate_prior(pipe))}
    results.update(pipe.compare_methods())
    write_json(workdir / "results.json", results)
    fp32, int8 = pipe.make_bundles("mipd")
    benchmark = pipe.run_benchmark([fp32, int8])
    frames = pipe.make_frames(int8)
    demo = pipe.make_demo(int8)

    from .benchmark_report import format_results
    from .data.split import dataset_split
    from .deploy.bundle import read_manifest
    from .report import write_report

    splits = dataset_split(pipe.data)
    data = {**pipe.data_params(), **{s: len(splits[s]) for s in ("seen", "rare", "unseen")}}
    report = write_report(workdir, asdict(cfg), data, {k: results[k] for k in ("prior", "teacher", *cfg.methods)},
                          benchmark, frames, demo)
    print(f"\nSynthSitu data:        {pipe.data}")
    print(f"open-vocabulary split: {pipe.data / 'splits.json'} ({data['seen']} seen, {data['rare']} rare, "
          f"{data['unseen']} unseen verbs)")
    print(f"teacher:               {pipe.teacher} (trained on its own sample, {pipe.teacher_data})")
    print(f"rationales:            {pipe.rationales}")
    for method in cfg.methods:
        print(f"student ({method}):{' ' * (14 - len(method))}{workdir / f'student-{method}'}")
    recipe = read_manifest(int8).quantization["recipe"]
    print(f"bundles:               {fp32} (FP32), {int8} (FP32 + INT8 by {recipe['method'].upper()}: {recipe['why']})")
    print(f"annotated frames:      {workdir / 'frames'}")
    print(f"demo video:            {demo['path']} ({demo['frames']} frames, {demo['fps']} FPS on {demo['backend']})")
    print(f"report:                {report}")
    write_json(workdir / "quickstart.json", {
        "command": command, "date": start_date.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1), "machine": device_info(), "versions": library_versions(),
        "config": asdict(cfg), "data": data, "accuracy": results, "int8_recipe": recipe, "benchmark": benchmark})
    print("\nSynthSitu test, top-1 (prior = frequency prior that ignores the image; teacher trained on all verbs "
          "of another sample)")
    print(format_comparison(results))
    print(f"\nbenchmark ({workdir / 'benchmark'}):")
    print(format_results(benchmark))
    return {"accuracy": results, "benchmark": benchmark["summary"], "report": str(report)}


def evaluate_prior(pipe: Pipeline) -> dict:
    from .baseline import FrequencyBaseline
    from .data.split import dataset_split
    from .data.swig import SituDataset
    from .metrics import evaluate

    splits = dataset_split(pipe.data)
    train = SituDataset(pipe.data, "train", ov_split=splits)
    test = SituDataset(pipe.data, "test", space=train.space)
    predictions = FrequencyBaseline(train.annotations, train.space).predict_dataset(test.annotations)
    write_json(pipe.workdir / "prior" / "predictions.json", predictions, indent=None)
    metrics = evaluate(test.annotations, train.space, predictions, splits)
    write_json(pipe.workdir / "prior" / "metrics.json", metrics)
    return metrics
