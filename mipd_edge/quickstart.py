"""``mipd-edge quickstart``: everything the SDK can do, end to end, on SynthSitu.

Each stage writes its outputs into the work directory and a marker with the parameters it
ran with; a rerun with the same parameters reuses the stage, so an interrupted quickstart
picks up where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from .files import read_json, write_json

log = logging.getLogger(__name__)

SIZES = {"default": {"train": 4800, "dev": 480, "test": 960, "image_size": 192},
         "fast": {"train": 1200, "dev": 240, "test": 480, "image_size": 192}}


def stage(workdir: Path, name: str, params: dict, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless a previous run with the same ``params`` finished it."""
    marker = workdir / ".stages" / f"{name}.json"
    if marker.is_file():
        done = read_json(marker)
        if done.get("params") == params:
            log.info("stage %s: reusing the finished run in %s", name, workdir)
            return done.get("result")
    log.info("stage %s: running", name)
    result = fn()
    write_json(marker, {"params": params, "result": result})
    return result


def run(workdir: Path, fast: bool = False, seed: int = 0) -> dict:
    from .baseline import FrequencyBaseline
    from .data.split import load_split
    from .data.swig import SituDataset
    from .data.synthsitu import generate
    from .metrics import evaluate, format_table

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_params = {"seed": seed, **SIZES["fast" if fast else "default"]}
    stage(workdir, "data", data_params, lambda: generate(data_dir, **data_params))
    splits = load_split(data_dir / "splits.json")

    def evaluate_baseline() -> dict:
        train = SituDataset(data_dir, "train", ov_split=splits)
        test = SituDataset(data_dir, "test", space=train.space)
        baseline = FrequencyBaseline(train.annotations, train.space)
        predictions = baseline.predict_dataset(test.annotations)
        out = workdir / "baseline"
        write_json(out / "predictions.json", predictions, indent=None)
        metrics = evaluate(test.annotations, train.space, predictions, splits)
        write_json(out / "metrics.json", metrics)
        return metrics

    metrics = stage(workdir, "baseline", data_params, evaluate_baseline)
    print(f"\nSynthSitu data:        {data_dir}")
    print(f"open-vocabulary split: {data_dir / 'splits.json'} ({len(splits['seen'])} seen, "
          f"{len(splits['rare'])} rare, {len(splits['unseen'])} unseen verbs)")
    print(f"\nReference predictor: {FrequencyBaseline.name}, SynthSitu test")
    print(format_table(metrics))
    print(f"\npredictions and metrics: {workdir / 'baseline'}")
    return {"baseline": metrics}
